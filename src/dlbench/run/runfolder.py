"""A run folder is owned: one process trains in it at a time (a lock), a run with other overrides
never takes over a folder that holds one (but one that trained nothing), and a run that does not
proceed changes no file in it.

Hydra's own `.hydra/` writing is off (conf/train.yaml: hydra.output_subdir: null): once the run is
known to proceed, dlbench writes overrides.yaml at once (so a run killed while it builds can be
resumed), and the config and Hydra's node once it is built.
"""
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from dlbench.artifacts import atomic_path, read_json
from dlbench.errors import CorruptFileError, RunFolderError
from dlbench.status import FINISHED, Status

# knobs that change no number a run computes: a folder's run may be resumed with other values
TOLERATED = ("trainer.progress", "trainer.threads", "logger.", "objective", "hydra.")
# continuing a completed run to more epochs is asked for by `dlbench resume RUN epochs=N` only, which
# sets this for its runs (an environment variable reaches a launcher's worker processes too)
CONTINUE_FINISHED = "DLBENCH_CONTINUE_FINISHED"


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold run_dir/.lock exclusively while the block runs; a second process is refused with who
    holds it. The kernel releases the lock when the process dies, so a killed run leaves none."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunFolderError(f"{run_dir} is in use by {holder}; wait for that run to end, or train into "
                                 "another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                  .encode(), 0)
        yield
    finally:
        os.close(fd)


def overrides_diff(before: list[str], now: list[str]) -> list[str]:
    """The overrides that differ between two runs, as 'key: before -> now', tolerated knobs and
    epochs left out (epochs is judged against the run's progress)."""
    def by_key(overrides: list[str]) -> dict[str, str]:
        pairs = (o.split("=", 1) for o in overrides if "=" in o)
        return {k.lstrip("+~"): v for k, v in pairs if not tolerated(k.lstrip("+~")) and k.lstrip("+~") != "epochs"}

    old, new = by_key(before), by_key(now)
    return [f"{k}: {old.get(k, '(default)')} there, {new.get(k, '(default)')} now"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def tolerated(key: str) -> bool:
    return key.startswith(TOLERATED) or key in TOLERATED


def read_overrides(run_dir: Path) -> list[str] | None:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return None
    try:
        overrides = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        overrides = err
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise CorruptFileError(path, "is not a YAML list of overrides", "restore it (one `- key=value` per line) "
                               "or delete the run folder to start the run over")
    return overrides


def read_summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    try:
        summary = read_json(path)
    except (ValueError, UnicodeDecodeError):
        summary = "corrupt"
    if summary is not None and not (isinstance(summary, dict) and "status" in summary):
        raise CorruptFileError(path, "is not a run summary (JSON with a status)",
                               "delete it and `dlbench resume` the folder: the checkpoint and metrics rebuild it")
    return summary


def read_summary_or_none(run_dir: Path) -> dict | None:
    try:
        return read_summary(run_dir)
    except CorruptFileError:
        return None


def claim(run_dir: Path, overrides: list[str], epochs: int) -> dict | None:
    """Check that this run may train in run_dir. Returns the summary of a finished run there with
    the same overrides (nothing to do), or None: go on (a new run, or an unfinished one resumes).
    Raises RunFolderError when the folder holds another run, or a finished one asked for more. A
    folder whose run trained nothing (killed or failed while it was built) is anyone's."""
    before = read_overrides(run_dir)
    if before is not None and (diff := overrides_diff(before, overrides)) and not trained_nothing(run_dir):
        raise RunFolderError(f"{run_dir} holds a run with other overrides ({'; '.join(diff)}); train into another "
                             f"folder, or `dlbench resume {run_dir}` to continue that run")
    previous = read_summary(run_dir)
    if previous is None or previous["status"] not in FINISHED:
        return None
    done = previous.get("epochs_completed") or 0
    if epochs < done:
        raise RunFolderError(f"{run_dir} holds a completed run of {done} epochs and {epochs} were asked for; "
                             "train into another folder (its checkpoints are of the last epoch only)")
    if epochs > done and previous["status"] == Status.COMPLETED and not previous.get("early_stopping"):
        if os.environ.get(CONTINUE_FINISHED) == "1":
            return None
        raise RunFolderError(f"{run_dir} holds a completed run of {done} epochs and {epochs} were asked for; "
                             f"`dlbench resume {run_dir} epochs={epochs}` trains it on from epoch {done}")
    return previous


def trained_nothing(run_dir: Path) -> bool:
    """No checkpoint and no epoch recorded: the run there stopped before its first epoch ended."""
    summary = read_summary_or_none(run_dir)
    return not (run_dir / "checkpoints" / "last.pt").exists() and (
        summary is None or (not summary.get("epochs_completed") and summary.get("status") not in FINISHED))


def write_overrides(run_dir: Path) -> None:
    """.hydra/overrides.yaml, as soon as the run is known to proceed: a run killed at any moment
    after, even while it builds, is one `dlbench resume` knows."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        with atomic_path(run_dir / ".hydra" / "overrides.yaml") as tmp:
            OmegaConf.save(OmegaConf.create(list(HydraConfig.get().overrides.task)), tmp)


def write_hydra(run_dir: Path, cfg: DictConfig) -> None:
    """What Hydra would have written to run_dir/.hydra, now that the run proceeds."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    files = {"config.yaml": cfg, "hydra.yaml": OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg)}),
             "overrides.yaml": OmegaConf.create(list(hydra_cfg.overrides.task))}
    for name, node in files.items():
        with atomic_path(run_dir / ".hydra" / name) as tmp:
            OmegaConf.save(node, tmp)
