"""Hydra finds launchers in the hydra_plugins namespace and imports every module there when it
starts: this one only names the launcher, and loads dlbench.launchers.fused (and torch) when a
sweep uses it."""
from hydra.plugins.launcher import Launcher


class FusedLauncher(Launcher):
    def __init__(self, max_group: int = 64) -> None:
        from dlbench.launchers.fused import FusedLauncher as Implementation

        self.impl = Implementation(max_group=max_group)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides, initial_job_idx):
        return self.impl.launch(job_overrides, initial_job_idx)
