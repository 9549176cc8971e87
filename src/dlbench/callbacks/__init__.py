"""Everything that watches a run is a callback: the loop only calls these hooks."""
import logging

log = logging.getLogger("dlbench")
# statuses whose model can still be run at the end (to draw or sample from); a failed run's may not
USABLE_MODEL = ("completed", "interrupted", "diverged")


class Callback:
    def on_run_start(self, state) -> None: ...
    def on_epoch_start(self, state) -> None: ...
    def on_step(self, state, step: dict) -> None: ...  # {"loss": 0-d tensor, maybe "grad/norm"}, on the device
    def on_epoch_end(self, state, metrics: dict) -> None: ...
    def on_run_end(self, state) -> None: ...  # always called, whatever the status


class Callbacks:
    """Calls each hook on every callback, in order; per-step hooks only on those that define one."""

    def __init__(self, callbacks: list[Callback]):
        self.callbacks = list(callbacks)
        self.stepping = [c for c in self.callbacks if type(c).on_step is not Callback.on_step]

    def on_run_start(self, state) -> None:
        for c in self.callbacks:
            c.on_run_start(state)

    def on_epoch_start(self, state) -> None:
        for c in self.callbacks:
            c.on_epoch_start(state)

    def on_step(self, state, step: dict) -> None:
        for c in self.stepping:
            c.on_step(state, step)

    def on_epoch_end(self, state, metrics: dict) -> None:
        for c in self.callbacks:
            c.on_epoch_end(state, metrics)

    def on_run_end(self, state) -> None:
        errors = []
        for c in self.callbacks:
            try:
                c.on_run_end(state)
            except Exception as err:  # one failing writer must not keep the others from closing
                errors.append(err)
        if errors and state.status in ("completed", "diverged"):
            raise errors[0]
        for err in errors:  # the run's own error is the one to propagate
            log.error("while closing a %s run: %r", state.status, err)


def default_callbacks(cfg) -> list[Callback]:
    from dlbench.callbacks.checkpoint import Checkpointer
    from dlbench.callbacks.divergence import DivergenceGuard
    from dlbench.callbacks.files import RunFiles
    from dlbench.callbacks.progress import EpochLog, ProgressBar, wants_progress_bar
    from dlbench.callbacks.tensorboard import TensorBoard

    callbacks: list[Callback] = [RunFiles()]
    if cfg.logger.enabled:
        callbacks.append(TensorBoard(log_every=cfg.trainer.log_every, sample_images=cfg.logger.sample_images))
    if cfg.trainer.checkpoint:
        callbacks.append(Checkpointer())
    if wants_progress_bar(cfg.trainer.progress):
        callbacks.append(ProgressBar(log_every=cfg.trainer.log_every))
    callbacks += [EpochLog(), DivergenceGuard(every=cfg.trainer.log_every, factor=cfg.trainer.diverge_factor)]
    return callbacks
