import operator

import torch

from dlbench import choices
from dlbench.callbacks import Callback
from dlbench.weights import save_atomic, save_best
from dlbench.status import Status


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by min_delta for `patience` epochs, and load the best
    epoch's weights when training ends. Its memory (the best value and epoch) is in the
    checkpoint, the best weights in a file of their own, so a resumed run stops where an
    uninterrupted one would."""

    def __init__(self, monitor: str = "val/loss", mode: str = "min", patience: int = 5, min_delta: float = 0.0,
                 restore_best: bool = True):
        if mode not in choices.MONITOR_MODES:
            raise ValueError(f"early_stopping.mode must be one of {', '.join(choices.MONITOR_MODES)}, not {mode!r}")
        self.monitor, self.patience, self.min_delta, self.restore_best = monitor, patience, min_delta, restore_best
        self.better = operator.lt if mode == "min" else operator.gt
        self.sign = -1 if mode == "min" else 1
        self.best = self.best_epoch = self.stopped_epoch = None
        self.restored = False

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.stopped_epoch = state["best"], state["best_epoch"], state["stopped_epoch"]

    def improved(self, value: float) -> bool:
        return self.best is None or self.better(value, self.best + self.sign * self.min_delta)

    def on_epoch_end(self, state, metrics: dict) -> None:
        if self.monitor not in metrics:
            raise ValueError(f"early_stopping.monitor={self.monitor!r} is not a metric of this run; "
                             f"valid: {', '.join(k for k in metrics if k != 'epoch')}")
        value, epoch = metrics[self.monitor], metrics["epoch"]
        if value is not None and self.improved(value):
            self.best, self.best_epoch = value, epoch
            if self.restore_best:
                save_atomic({"model": state.model.state_dict(), "epoch": epoch}, self.weights_path(state))
        elif self.best_epoch is not None and epoch - self.best_epoch >= self.patience:
            state.should_stop, self.stopped_epoch = True, epoch

    def weights_path(self, state):
        return state.run_dir / "checkpoints" / "early_stopping_best.pt"

    def on_train_end(self, state) -> None:
        """The run ends with the best epoch's model: its weights, and every number summary.json
        and best.pt give (the splits' metrics are those its epoch measured, with these weights)."""
        self.restored = bool(self.restore_best and state.status == Status.COMPLETED and self.weights_path(state).exists())
        if not self.restored:
            return
        state.model.load_state_dict(torch.load(self.weights_path(state), map_location=state.device)["model"])
        at_best = next((m for m in state.history if m["epoch"] == self.best_epoch), {})
        state.recorder.summary.update({k: v for k, v in at_best.items() if k.startswith(("train/", "val/", "test/"))})
        state.best = {state.monitor: at_best.get(state.monitor), "epoch": self.best_epoch}
        if state.cfg.trainer.checkpoint:
            save_best(state)

    def on_run_end(self, state) -> None:
        at_best = next((m for m in state.history if m["epoch"] == self.best_epoch), {})
        state.recorder.summary["early_stopping"] = {
            "monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch, "restored_best": self.restored,
            "metrics_at_best": {k: v for k, v in at_best.items() if k != "epoch"}}


class StopAtTarget(Callback):
    """trainer.stop_at_target: stop once the judging metric reaches target_acc, as a study of
    epochs-to-target wants (a slow rate gets a long budget; a fast one stops when it gets there)."""

    def on_epoch_end(self, state, metrics: dict) -> None:
        value = metrics.get(state.monitor)
        if state.task.has_target and value is not None and value >= state.cfg.target_acc:
            state.should_stop = True
