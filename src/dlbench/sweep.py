"""What a sweep needs beyond its runs: the number a sweeper optimises, the cores parallel jobs
share, which runs failed (told through their folders, since a joblib or submitit job lives in
another process) and re-running a recorded sweep into its own folder."""
import math
import os
import sys
import time
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig

from dlbench.artifacts import read_json
from dlbench.errors import CorruptFileError, first_line
from dlbench.status import Status

# (sweep folder, time it started) of each multirun this process launched
launched: list[tuple[Path, float]] = []


class RecordSweep(HydraCallback):
    """Hydra calls this in the launching process with the resolved sweep folder, wherever it was
    set (the command line, an experiment file, the default pattern). As each run starts, it says
    which run of how many it is and, from the runs done so far, about how long the rest take."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        launched.append((Path(str(config.hydra.sweep.dir)), time.time()))
        self.total, self.keys = planned_total(config)
        self.pid, self.started, self.done = os.getpid(), time.time(), 0
        self.trained, self.training_seconds = 0, 0.0  # runs trained here, not found finished: the rate

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        if getattr(self, "pid", None) != os.getpid():
            return  # a launcher's worker process: the launching one keeps count
        self.job_started = time.time()
        self.kept = finished_before(config)
        shown = [o for o in config.hydra.overrides.task if o.lstrip("+~").split("=")[0] in self.keys]
        line = f"dlbench: sweep run {config.hydra.job.num + 1}/{self.total or '?'}"
        line += f" ({', '.join(shown)})" if shown else ""
        if "fused" in str(config.hydra.launcher.get("_target_", "")):
            line += ": prepared (the fused launcher trains once every run is ready)"
        elif self.done:
            line += f"; {self.done} done in {duration(self.job_started - self.started)}"
            if self.total and self.trained:
                line += f", about {duration(self.training_seconds / self.trained * (self.total - self.done))} left"
        print(line, file=sys.stderr, flush=True)

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        if getattr(self, "pid", None) == os.getpid():
            self.done += 1
            if not self.kept:  # a run found finished took no time: it says nothing of the others
                self.trained += 1
                self.training_seconds += time.time() - self.job_started


def finished_before(config: DictConfig) -> bool:
    """Whether the job's folder already holds a finished run (which `dlbench train` keeps as it is)."""
    from dlbench.status import FINISHED

    folder = config.hydra.runtime.get("output_dir")
    try:
        return bool(folder) and (read_json(Path(folder) / "summary.json") or {}).get("status") in FINISHED
    except ValueError:
        return False


def planned_total(config: DictConfig) -> tuple[int | None, list[str]]:
    """How many runs the sweep has (None when the sweeper decides as it goes and sets no count),
    and the keys that vary."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    sweeper = config.hydra.sweeper
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    try:
        parsed = OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])
    except HydraException:
        return None, []
    counts: dict[str, int | None] = {}
    for o in parsed:  # a later override of a key replaces an earlier one, as in Hydra's sweeper
        sweep = o.is_discrete_sweep() and o.value_type.name != "GLOB_CHOICE_SWEEP"
        counts[o.get_key_element()] = len(list(o.sweep_string_iterator())) if sweep else (
            None if o.is_sweep_override() else 1)
    keys = [k for k, n in counts.items() if n != 1]
    if str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return (None if None in counts.values() else math.prod(counts.values())), keys
    return (int(sweeper.n_trials) if sweeper.get("n_trials") else None), keys


def swept_keys() -> list[str]:
    """Inside a sweep's job, the keys its sweep varies (from the sweep folder's multirun.yaml, which
    Hydra writes before any job starts, else the sweeper's own params); [] outside a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return []
    hydra_cfg = HydraConfig.get()
    try:
        config = OmegaConf.load(Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml")
    except Exception:  # not written (a sweeper that saves it last) or unreadable
        config = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg, resolve=False)})
        config.hydra.overrides.task = []  # the job's own values, not the sweep's
    return [key.lstrip("+~") for key in planned_total(config)[1]]


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def failed_runs(sweep_dir: Path, since: float) -> list[Path]:
    """Runs under sweep_dir whose summary says `failed` and was written since `since`: failures of
    an earlier sweep into the same folder that this one did not re-run are not this sweep's."""
    failed = []
    for path in sorted(sweep_dir.rglob("summary.json")):
        try:
            status = (read_json(path) or {}).get("status")
        except ValueError:
            status = Status.FAILED  # dlbench writes it atomically: unreadable, it was not left by a good run
        if status == Status.FAILED and path.stat().st_mtime >= since - 1.0:  # 1 s: mtime granularity
            failed.append(path.parent)
    return failed


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


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_job(launcher: DictConfig, cpus: int) -> int | None:
    """Torch threads for one job when a launcher runs several at once, so they do not fight over
    the cores: a submitit task gets its `cpus_per_task`; joblib's `n_jobs` workers split this
    machine (n_jobs=-1 is one worker per core, -2 all but one, as joblib counts). None: the
    launcher runs one job at a time, which may use every core."""
    if launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    n_jobs = launcher.get("n_jobs")
    if not n_jobs:
        return None
    workers = n_jobs if n_jobs > 0 else max(1, cpus + 1 + n_jobs)
    return max(1, cpus // workers)


def recorded_sweep(sweep_dir: Path) -> list[str]:
    """The `dlbench train` arguments of the sweep recorded in sweep_dir/multirun.yaml, aimed back at
    that folder: finished runs are kept, unfinished ones resume, missing ones run."""
    path = sweep_dir / "multirun.yaml"
    try:
        overrides = yaml.safe_load(path.read_text())["hydra"]["overrides"]
        kept = [o for o in overrides["hydra"] if o.split("=")[0] not in ("hydra.sweep.dir", "hydra.mode")]
        return ["-m", *overrides["task"], *kept, f"hydra.sweep.dir='{sweep_dir}'"]
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise CorruptFileError(path, f"is not the record of a sweep ({type(err).__name__}: {first_line(err)})",
                               "restore it, or run the sweep again with its overrides and --into "
                               f"{sweep_dir}") from None
