"""A run's life in its folder, the same for every launcher.

`Run.open` takes the folder (lock, claim), checks the config, builds the run and resumes it from
its checkpoint, and writes `.hydra/` once the run proceeds; whatever fails on the way is recorded
in the folder's summary.json and train.log. Training is then five phases: `begin`, and per epoch
`begin_epoch`, `after_step` (every optimizer step), `end_epoch`; then `finish`. `fit` calls them in
order for a run that trains alone; the fused launcher calls the same phases for each member of a
group whose steps it takes together. `close` releases the folder.
"""
import logging
import sys
import time
import traceback
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from omegaconf import DictConfig

from dlbench import schema
from dlbench.artifacts import failed_at_start, plot_curves, write_json_atomic
from dlbench.callbacks import Callbacks
from dlbench.errors import Diverged, RunFolderError
from dlbench.run import checkpoint, runfolder
from dlbench.run.build import build_state
from dlbench.run.check import check_fit
from dlbench.run.recorder import TensorBoardSink
from dlbench.run.state import RunState
from dlbench.status import Status
from dlbench.threads import flush_denormals

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's, for train.log


@dataclass
class EpochClock:
    """When an epoch began, at what rate, and the run's time spent on other runs by then."""
    start: float
    lr: float
    elsewhere: float


class Run:
    """One run in its folder. `previous` is set (and `state` is None) when the folder already holds
    this run finished: there is nothing to train, and that summary is the run's outcome."""

    def __init__(self, run_dir: Path, overrides: list[str]):
        self.run_dir, self.overrides = run_dir, overrides
        self.state: RunState | None = None
        self.callbacks: Callbacks | None = None
        self.previous: dict | None = None
        self._held = ExitStack()

    # ---------------------------------------------------------------- the folder

    @classmethod
    def open(cls, cfg: DictConfig, run_dir: Path, overrides: list[str], data_cache: dict | None = None) -> "Run":
        """Lock and claim run_dir, then check, build and resume the run (see the module's
        docstring). The folder stays locked until `close`; on any error it is released and the
        error raised (RunFolderError: the folder holds another run, and nothing in it changed)."""
        run = cls(run_dir, overrides)
        try:
            run._held.enter_context(runfolder.locked(run_dir))
            run.previous = runfolder.claim(run_dir, overrides, cfg.epochs)
            if run.previous is not None:
                # not in train.log: a run that does not proceed changes nothing in the folder
                print(f"dlbench: {run_dir} already holds a {run.previous['status']} run; not running it again",
                      file=sys.stderr)
                return run
            runfolder.write_overrides(run_dir)
            run.state, run.callbacks = run._start(cfg, data_cache)
            runfolder.write_hydra(run_dir, cfg)  # the run proceeds: the folder is its own
            return run
        except BaseException:
            run.close()
            raise

    def _start(self, cfg: DictConfig, data_cache: dict | None) -> tuple[RunState, Callbacks]:
        """Check, build and resume; whatever raises is recorded as the run's end (`failed`, or
        `interrupted`), with the traceback in train.log."""
        try:
            schema.check(cfg)
            check_fit(cfg)
            if isinstance(cfg.trainer.threads, int):  # auto: ShareThreads sets them as the run goes
                torch.set_num_threads(cfg.trainer.threads)
            flush_denormals(bool(cfg.trainer.get("flush_denormal", True)))  # in every OpenMP thread
            state, callbacks = build_state(cfg, self.run_dir, self.overrides, data_cache)
            checkpoint.resume(state, callbacks)
            return state, callbacks
        except RunFolderError:  # the folder holds another run: it is left as it was
            raise
        except KeyboardInterrupt:
            self._record_start_failure(cfg, None, Status.INTERRUPTED)
            raise
        except Exception:
            self._record_start_failure(cfg, traceback.format_exc(), Status.FAILED)
            raise

    def _record_start_failure(self, cfg: DictConfig, error: str | None, status: Status) -> None:
        previous = runfolder.read_summary_or_none(self.run_dir)
        record_failure(self.run_dir, failed_at_start(cfg, self.overrides, error, previous, status))

    def close(self) -> None:
        """Release the folder (a killed process releases it too: the kernel drops its lock)."""
        self._held.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- training, phase by phase

    @property
    def done(self) -> bool:
        """Trained all its epochs, asked to stop, or diverged."""
        s = self.state
        return s.epoch >= s.cfg.epochs or s.should_stop or s.diverged is not None

    def fit(self) -> dict:
        """Train alone to the end; the summary. An error ends the run as `failed` (`interrupted`
        for Ctrl-C or SIGTERM) and is raised again once the run's files say so."""
        state, trained = self.state, False
        try:
            self.begin()
            while state.epoch < state.cfg.epochs and not state.should_stop:
                self.epoch()
            trained = True
        except Diverged as stop:
            self.stopped_by(stop)
        except BaseException as err:
            self.stopped_by(err)
            raise
        finally:
            self.finish(trained)
        return state.summary()

    def begin(self) -> None:
        state = self.state
        if state.cfg.logger.enabled:
            state.recorder.sinks.append(TensorBoardSink(state.run_dir, state.hparams, state.swept,
                                                        fresh=state.epoch == 0))
        self.callbacks.on_run_start(state)
        write_json_atomic(state.run_dir / "summary.json", state.summary())

    def epoch(self) -> None:
        """One epoch trained alone: the task trains and evaluates between the epoch's phases."""
        clock = self.begin_epoch()
        result, train_seconds, examples = self.state.task.train_and_evaluate(self.state, self.after_step)
        self.end_epoch(clock, result, train_seconds, examples)

    def begin_epoch(self) -> EpochClock:
        start = time.perf_counter()
        self.callbacks.on_epoch_start(self.state)
        return EpochClock(start, self.state.optimizer.param_groups[0]["lr"], self.state.elsewhere)

    def after_step(self, step: dict) -> None:
        """After every optimizer step: {"loss": 0-d tensor, maybe "grad/norm"}. A callback may
        raise Diverged."""
        self.state.global_step += 1
        self.state.schedule.step_batch()
        self.callbacks.on_step(self.state, step)

    def end_epoch(self, clock: EpochClock, result: dict, train_seconds: float, examples: int) -> None:
        """The schedule, the callbacks, the records and the checkpoint of an epoch trained and
        evaluated; its seconds leave out time spent on other runs meanwhile (a fused group's)."""
        state = self.state
        metrics = {"epoch": state.epoch + 1, **result, "lr": clock.lr}
        state.schedule.step_epoch(metrics)
        metrics["epoch_seconds"] = round(time.perf_counter() - clock.start - (state.elsewhere - clock.elsewhere), 4)
        state.end_epoch(metrics, train_seconds, examples)
        self.callbacks.on_epoch_end(state, metrics)  # may add to metrics (probes) or ask to stop
        state.recorder.epoch(metrics)
        write_json_atomic(state.run_dir / "summary.json", state.summary())
        if state.cfg.trainer.checkpoint:
            checkpoint.save(state, self.callbacks)

    def stopped_by(self, err: BaseException) -> None:
        """The run's status for an error that stops it: `diverged`, `interrupted` (Ctrl-C,
        SIGTERM) or `failed` with the traceback (call it inside the `except`). A SystemExit (a
        cluster job requeued at its time limit exits so) leaves it `running`: it resumes."""
        state = self.state
        if state.status != Status.RUNNING:
            return
        if isinstance(err, Diverged):
            state.status, state.diverged = Status.DIVERGED, err.info
        elif isinstance(err, KeyboardInterrupt):
            state.status = Status.INTERRUPTED
        elif isinstance(err, Exception):
            state.status, state.error = Status.FAILED, traceback.format_exc()

    def finish(self, trained: bool = True) -> None:
        """The run's last word: its status (when it trained to its end: completed or diverged,
        unless set), the callbacks' closing, then its files. A callback that fails here fails the
        run, and so does failing to write them (the summary then says so, if the disk lets it)."""
        state = self.state
        if trained and state.status == Status.RUNNING:
            state.status = Status.DIVERGED if state.diverged else Status.COMPLETED
        state.ended = time.perf_counter()
        try:
            self.callbacks.close(state)
        except Exception:
            state.status, state.error = Status.FAILED, traceback.format_exc()
            raise
        finally:
            self._write_files()

    def _write_files(self) -> None:
        state = self.state
        try:
            summary = state.summary()
            if state.error:
                record_failure(state.run_dir, summary)
            else:
                write_json_atomic(state.run_dir / "summary.json", summary)
            if state.history:
                title = f"{state.cfg.model.name} on {state.cfg.dataset.name}  {' '.join(state.overrides)}"
                plot_curves(state.history, state.run_dir / "plots" / "curves.png", title=title)
            state.recorder.close(state.status)
        except Exception:
            state.status, state.error = Status.FAILED, traceback.format_exc()
            record_failure(state.run_dir, failed_at_start(state.cfg, state.overrides, state.error,
                                                          runfolder.read_summary_or_none(state.run_dir)))
            raise


def record_failure(run_dir: Path, summary: dict) -> None:
    """summary.json says how the run ended; the traceback goes to train.log (never to the terminal:
    the CLI prints one line for a user's error)."""
    if summary.get("error"):
        with suppress(OSError), open(run_dir / "train.log", "a") as f:
            f.write(f"[{datetime.now():%Y-%m-%d %H:%M:%S}][dlbench][ERROR] - run {summary['status']}:\n{summary['error'].rstrip()}\n")
    with suppress(OSError):  # a full disk keeps the last good summary
        write_json_atomic(run_dir / "summary.json", summary)


def log_handler(path: Path) -> logging.FileHandler:
    """A handler writing a run's train.log as Hydra writes it."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler
