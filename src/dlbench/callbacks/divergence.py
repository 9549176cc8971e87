import math

from dlbench.callbacks import Callback
from dlbench.errors import Diverged


class DivergenceGuard(Callback):
    """Stops a run whose loss is NaN/inf or `factor` times its first value. It reads the loss every
    `every` steps (a device sync) and at each epoch's end; a NaN never recovers, so that is enough.
    Mid-epoch it raises Diverged; at an epoch's end it sets state.diverged, so the epoch is still
    recorded and checkpointed before the run stops."""

    def __init__(self, every: int, factor: float):
        self.every = every
        self.factor = factor
        self.first_loss: float | None = None

    def state_dict(self) -> dict:
        return {"first_loss": self.first_loss}

    def load_state_dict(self, state: dict) -> None:
        self.first_loss = state["first_loss"]

    def on_step(self, state, step: dict) -> None:
        if state.global_step == 1 or state.global_step % self.every == 0:
            value = step["loss"].item()
            if self.first_loss is None:
                self.first_loss = value
            if (info := self.check(state, value, epoch=state.epoch + 1)) is not None:
                raise Diverged(info)

    def on_epoch_end(self, state, metrics: dict) -> None:
        if (info := self.check(state, metrics["train/loss"], epoch=state.epoch)) is not None:
            state.diverged, state.should_stop = info, True

    def check(self, state, value: float | None, epoch: int) -> dict | None:
        if value is None or not math.isfinite(value):
            reason = f"train loss is {value}"
        elif self.first_loss is not None and value > self.factor * max(self.first_loss, 1e-12):
            reason = f"train loss {value:.4g} > {self.factor:g} x first loss {self.first_loss:.4g}"
        else:
            return None
        return {"reason": reason, "step": state.global_step, "epoch": epoch,
                "loss": value if value is not None and math.isfinite(value) else str(value)}
