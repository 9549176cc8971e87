import math

from dlbench.callbacks import Callback


class Diverged(Exception):
    def __init__(self, info: dict):
        super().__init__(info["reason"])
        self.info = info


class DivergenceGuard(Callback):
    """Stops a run whose loss is NaN/inf or `factor` times its first value. It reads the loss every
    `every` steps (a device sync) and at each epoch's end; a NaN never recovers, so that is enough."""

    def __init__(self, every: int, factor: float):
        self.every = every
        self.factor = factor

    def on_step(self, state, step: dict) -> None:
        if state.global_step == 1 or state.global_step % self.every == 0:
            value = step["loss"].item()
            if state.first_loss is None:
                state.first_loss = value
            self.check(state, value, where="step")

    def on_epoch_end(self, state, metrics: dict) -> None:
        self.check(state, metrics["train/loss"], where="epoch")

    def check(self, state, value: float | None, where: str) -> None:
        if value is None or not math.isfinite(value):
            reason = f"train loss is {value}"
        elif state.first_loss is not None and value > self.factor * max(state.first_loss, 1e-12):
            reason = f"train loss {value:.4g} > {self.factor:g} x first loss {state.first_loss:.4g}"
        else:
            return
        raise Diverged({"reason": reason, "step": state.global_step, "epoch": state.epoch + (where == "step"),
                        "loss": value if value is not None and math.isfinite(value) else str(value)})
