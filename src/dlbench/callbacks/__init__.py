"""Everything that watches a run is a callback: the loop only calls these hooks.

A callback reads the run state and writes through the run's recorder (state.recorder); it never
reads another callback's attributes, so their order only decides who writes first. One that keeps
state across epochs returns it from state_dict() and the checkpoint carries it.
"""
import logging

from dlbench.status import FINISHED

log = logging.getLogger("dlbench")


class Callback:
    reads_grads = False  # on_step reads the parameters' .grad (a fused group then gives the run its own)

    def on_run_start(self, state) -> None: ...  # after a resumed run's checkpoint is loaded
    def on_epoch_start(self, state) -> None: ...
    def on_step(self, state, step: dict) -> None: ...  # {"loss": 0-d tensor, maybe "grad/norm"}, on the device
    # the epoch is measured and state.epoch counts it; a callback may add to metrics or ask to
    # stop (state.should_stop). The run records the epoch and checkpoints after every callback.
    def on_epoch_end(self, state, metrics: dict) -> None: ...
    def on_train_end(self, state) -> None: ...  # training stopped: the one place final weights may change
    def on_run_end(self, state) -> None: ...    # always called, whatever the status

    def state_dict(self) -> dict | None:
        return None  # keeps nothing across epochs

    def load_state_dict(self, state: dict) -> None: ...


class Callbacks:
    """Calls each hook on every callback; per-step hooks only on those that define one."""

    def __init__(self, callbacks: list[Callback]):
        self.callbacks = list(callbacks)
        self.stepping = [c for c in self.callbacks if type(c).on_step is not Callback.on_step]
        self.reads_grads = any(c.reads_grads for c in self.stepping)

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

    def close(self, state) -> None:
        """on_train_end then on_run_end on every callback, even when one raises: one failing
        writer must not keep the others from closing. A finished run fails with the first error;
        an interrupted or failed one keeps its own error and logs these."""
        errors = []
        for hook in ("on_train_end", "on_run_end"):
            for c in self.callbacks:
                try:
                    getattr(c, hook)(state)
                except Exception as err:
                    errors.append(err)
        if errors and state.status in FINISHED:
            raise errors[0]
        for err in errors:
            log.error("while closing a %s run: %r", state.status, err)

    def _keys(self) -> list[str]:
        names = [type(c).__name__ for c in self.callbacks]
        return [name if names.count(name) == 1 else f"{name}.{names[:i].count(name)}" for i, name in enumerate(names)]

    def state_dict(self) -> dict:
        return {key: s for key, c in zip(self._keys(), self.callbacks) if (s := c.state_dict()) is not None}

    def load_state_dict(self, states: dict) -> None:
        for key, c in zip(self._keys(), self.callbacks):
            if key in states:
                c.load_state_dict(states[key])
