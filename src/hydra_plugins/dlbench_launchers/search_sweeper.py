"""dlbench's search (`hydra/sweeper=search`, conf/hydra/sweeper/search.yaml): Hydra imports this module
when it starts, so it only names the sweeper; dlbench.search (and Optuna) load when a sweep uses it."""
from hydra.plugins.sweeper import Sweeper


class SearchSweeper(Sweeper):
    def __init__(self, **config) -> None:
        from dlbench.search.sweeper import SearchSweeper as Implementation

        self.impl = Implementation(**config)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments):
        return self.impl.sweep(arguments)
