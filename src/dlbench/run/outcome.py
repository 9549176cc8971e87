"""What a launcher's job returns for a run, and what the CLI learns of a sweep's runs afterwards.

Every launcher (basic, joblib, submitit, fused) turns a run's outcome into its job's return value
with `job_return`, so a run ends the same way whichever launcher trains it. What the CLI needs to
know after a sweep is told through files, since a joblib or submitit job lives in another
process: each run's summary.json, and `<sweep>/.refused.jsonl` for runs that were refused a
folder that is not theirs (and so could write nothing in it).
"""
import json
import logging
import math
import os
import sys
import time
from contextlib import suppress
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dlbench.errors import USER_ERROR_STATUS, DataNotFoundError, RunFolderError, UserError, first_line
from dlbench.status import Status

log = logging.getLogger("dlbench")
REFUSED = ".refused.jsonl"
DEBUG = "HYDRA_FULL_ERROR"  # set (or `dlbench train --debug`, which sets it): a user's error shows its traceback


def debugging() -> bool:
    return os.environ.get(DEBUG) == "1"


def job_return(cfg: DictConfig, outcome: dict | BaseException | None, hydra_cfg: DictConfig | None = None
               ) -> float | None:
    """The value a job returns for a run that ended with `outcome`: its summary (or None), or the
    error it raised (call this inside the `except`). A user's error is said in one line: for a
    single run, or missing data (the same for every run), the command stops with exit status 2;
    in a sweep the other runs go on. A bug's traceback is logged and the sweep goes on (a single
    run raises it). The value is the run's `objective` (objective_value). hydra_cfg: the job's
    Hydra config, when this is called after the job (default: the current job's)."""
    hydra_cfg = hydra_cfg if hydra_cfg is not None else HydraConfig.get()
    if isinstance(outcome, BaseException):
        _say(outcome, hydra_cfg)
        outcome = None
    return objective_value(outcome, cfg.objective, str(hydra_cfg.sweeper.get("direction", "maximize")))


def _say(err: BaseException, hydra_cfg) -> None:
    multirun, run_dir = hydra_cfg.mode == RunMode.MULTIRUN, Path(hydra_cfg.runtime.output_dir)
    if isinstance(err, UserError):
        if debugging():
            raise err
        if isinstance(err, DataNotFoundError) or not multirun:
            print(f"dlbench: {err}", file=sys.stderr)
            sys.exit(USER_ERROR_STATUS)
        print(f"dlbench: run {hydra_cfg.job.num} ({run_dir}): {err}", file=sys.stderr)
        if isinstance(err, RunFolderError):
            record_refusal(Path(str(hydra_cfg.sweep.dir)), run_dir, err)
    elif isinstance(err, Exception):
        if not multirun:
            raise err
        # a program bug: the run recorded itself as failed and the sweep goes on
        say_failure(err, run_dir, f"run {hydra_cfg.job.num}")
    else:  # Ctrl-C, SIGTERM: the whole command stops
        raise err


def say_failure(err: Exception, run_dir: Path, who: str) -> None:
    """A run that failed inside a sweep: its traceback goes to the run's log (train.log) only, and the
    terminal gets one line with the cause and where the traceback is. Where no log file listens (logging
    not set up), the traceback goes wherever the log goes, so it is never lost."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "run failed: %s", (run_dir,),
                            (type(err), err, err.__traceback__))
    files = [h for h in logging.getLogger().handlers
             if isinstance(h, logging.FileHandler) or not isinstance(h, logging.StreamHandler)]
    for handler in files or logging.getLogger().handlers:
        if record.levelno >= handler.level:
            handler.handle(record)
    cause = first_line(err)
    cause = cause if cause == type(err).__name__ else f"{type(err).__name__}: {cause}"
    print(f"dlbench: {who} failed: {cause}; traceback in {Path(run_dir) / 'train.log'}", file=sys.stderr)


def objective_value(summary: dict | None, metric: str | None, direction: str) -> float | None:
    """The number a sweeper (Optuna) optimises: `metric` from the run's summary. A diverged run,
    or one without the metric, is the worst value for `direction`, so a search learns to avoid
    that region instead of stopping; a failed run (a bug, not a result) gives None, which the
    sweeper records as a failed trial."""
    if summary is None or summary.get("status") == Status.FAILED:
        return None
    # Optuna's config spells it `maximize`, `MAXIMIZE` or as its Direction enum
    worst = -math.inf if "max" in str(direction).lower() else math.inf
    value = summary.get(metric or f"best/{summary.get('target_metric')}")
    if summary.get("status") == Status.DIVERGED or value is None or not math.isfinite(value):
        return worst
    return float(value)


def record_refusal(sweep_dir: Path, run_dir: Path, err: Exception) -> None:
    """A run of a sweep refused its folder (another process trains in it, or it holds another run):
    one line in the sweep folder, whichever process the job ran in."""
    line = json.dumps({"run": str(run_dir), "time": time.time(), "error": str(err)})
    with suppress(OSError), open(sweep_dir / REFUSED, "a") as f:
        f.write(line + "\n")


def refused_runs(sweep_dir: Path, since: float) -> list[Path]:
    """The runs of sweep_dir refused their folder since `since`."""
    path = sweep_dir / REFUSED
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        with suppress(ValueError, KeyError, TypeError):
            record = json.loads(line)
            if record["time"] >= since:
                runs.append(Path(record["run"]))
    return runs
