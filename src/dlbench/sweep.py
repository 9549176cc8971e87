"""What a sweep needs beyond its runs: its progress as it goes, the cores parallel jobs share,
which runs failed (told through their folders, since a joblib or submitit job lives in another
process) and re-running a recorded sweep into its own folder."""
import os
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig

from dlbench.errors import CorruptFileError
from dlbench.overrides import MULTIRUN, not_a_record, planned_total, read_multirun
from dlbench.paths import hydra_quote
from dlbench.run.runfolder import read_summary, read_summary_or_none
from dlbench.status import FINISHED, Status

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
    folder = config.hydra.runtime.get("output_dir")
    # an unreadable summary is no finished run (the run's own check of its folder says what is wrong)
    return bool(folder) and (read_summary_or_none(Path(folder)) or {}).get("status") in FINISHED


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
            status = (read_summary(path.parent) or {}).get("status")
        except CorruptFileError:
            status = Status.FAILED  # dlbench writes it atomically: unreadable, it was not left by a good run
        if status == Status.FAILED and path.stat().st_mtime >= since - 1.0:  # 1 s: mtime granularity
            failed.append(path.parent)
    return failed


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
    record = read_multirun(sweep_dir)  # a file that is not YAML of a mapping: CorruptFileError
    try:
        overrides = record["hydra"]["overrides"]
        kept = [o for o in overrides["hydra"] if o.split("=")[0] not in ("hydra.sweep.dir", "hydra.mode")]
        return ["-m", *overrides["task"], *kept, f"hydra.sweep.dir={hydra_quote(sweep_dir)}"]
    except (KeyError, TypeError, AttributeError) as err:  # YAML, but not what Hydra records
        raise not_a_record(sweep_dir / MULTIRUN, err) from None
