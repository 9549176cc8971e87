"""Inside a search's run: after every epoch the run reports its objective so far to its trial in the
study's journal, and stops when the pruner says so. Its status is then `pruned`: a result (its curves
so far, its summary), which the search counts as a pruned trial, not a failure."""
import logging
import math
from pathlib import Path

from dlbench.callbacks import Callback
from dlbench.search import JOURNAL
from dlbench.status import Status

log = logging.getLogger("dlbench")


def intermediate(objective: str, history: list[dict], direction: str) -> float | None:
    """The objective as it stands after the last epoch: `best/<m>` is the best of m so far (the
    value the finished run would return, were it to stop now), any other name the epoch's value."""
    name = objective[len("best/"):] if objective.startswith("best/") else objective
    values = [m[name] for m in history if isinstance(m.get(name), (int, float)) and math.isfinite(m[name])]
    if not values:
        return None
    if objective.startswith("best/"):
        return max(values) if direction == "maximize" else min(values)
    return values[-1]


class Pruning(Callback):
    def __init__(self, sweep_dir: Path, study_name: str, number: int, pruner, objective: str | None, direction: str):
        self.sweep_dir, self.study_name, self.number = sweep_dir, study_name, number
        self.pruner, self.objective, self.direction = pruner, objective, direction
        self.trial = None

    def on_run_start(self, state) -> None:
        import optuna

        from dlbench.search.study import storage

        self.objective = self.objective or f"best/{state.monitor}"  # as the run's return value has it
        if not (self.sweep_dir / JOURNAL).exists():
            raise FileNotFoundError(f"trial={self.number}: no search journal at {self.sweep_dir / JOURNAL}; "
                                    "a trial runs inside its search (hydra/sweeper=search)")
        study = optuna.load_study(study_name=self.study_name, storage=storage(self.sweep_dir), pruner=self.pruner)
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.number)
        self.trial = optuna.trial.Trial(study, trial_id)

    def on_epoch_end(self, state, metrics: dict) -> None:
        from optuna.trial import TrialState

        if self.trial is None or self.trial.study._storage.get_trial(self.trial._trial_id).state != TrialState.RUNNING:
            return  # told already (a finished trial's run trained on): nothing to report to
        value = intermediate(self.objective, [*state.history], self.direction)
        if value is None:
            return
        self.trial.report(value, step=metrics["epoch"])
        if metrics["epoch"] < state.cfg.epochs and self.trial.should_prune():
            state.status, state.should_stop = Status.PRUNED, True
            log.info("pruned after epoch %d: %s %.4g", metrics["epoch"], self.objective, value)


def pruning_callback(cfg):
    """The run's Pruning callback when it is a trial of a dlbench search, else None."""
    from hydra.core.hydra_config import HydraConfig

    from dlbench.search.study import build_pruner, direction, is_search

    if cfg.get("trial") is None or not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if not is_search(hydra_cfg.sweeper):
        return None
    return Pruning(Path(str(hydra_cfg.sweep.dir)), str(hydra_cfg.sweeper.study_name), int(cfg.trial),
                   build_pruner(hydra_cfg.sweeper.get("pruner")), cfg.get("objective"), direction(hydra_cfg.sweeper))
