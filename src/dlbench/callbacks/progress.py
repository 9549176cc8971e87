import logging
import os
import sys

from dlbench.callbacks import Callback
from dlbench.models.registry import count_params

log = logging.getLogger("dlbench")


def wants_progress_bar(setting) -> bool:
    if setting == "auto":
        return sys.stderr.isatty() and not os.environ.get("CI")
    return bool(setting)


class ProgressBar(Callback):
    """A bar per epoch with the running loss and throughput, for a person at a terminal."""

    def __init__(self, log_every: int):
        self.log_every = log_every
        self.bar = None

    def on_epoch_start(self, state) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=len(state.train_batches), desc=f"epoch {state.epoch + 1}/{state.cfg.epochs}", unit="step",
                        leave=False, dynamic_ncols=True)

    def on_step(self, state, step: dict) -> None:
        self.bar.update(1)
        if state.global_step % self.log_every == 0:
            rate = self.bar.format_dict["rate"] or 0.0
            self.bar.set_postfix(loss=f"{step['loss'].item():.4f}", ex_s=f"{rate * state.cfg.batch_size:,.0f}")

    def on_epoch_end(self, state, metrics: dict) -> None:
        self.close()

    def on_run_end(self, state) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochLog(Callback):
    """The run's start and outcome in the log (and on the console); each epoch's line is the recorder's."""

    def on_run_start(self, state) -> None:
        where = f"resuming after epoch {state.epoch}" if state.epoch else "starting"
        log.info("%s: %s on %s (%s train examples), %s parameters, device %s -> %s", where,
                 state.cfg.model.name, state.cfg.dataset.name, f"{len(state.data.train):,}",
                 f"{count_params(state.model):,}", state.device, state.run_dir)

    def on_run_end(self, state) -> None:
        why = (state.diverged or {}).get("reason") or (state.error or "").strip().rpartition("\n")[2]
        log.info("run %s after %d epochs%s -> %s", state.status, state.epoch, f" ({why})" if why else "",
                 state.run_dir)
