"""run(cfg) -> summary: one run trained alone, start to end, for the CLI and for Python users."""
import logging
from datetime import datetime
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dlbench.run.lifecycle import Run, log_handler

log = logging.getLogger("dlbench")


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Train one run into run_dir (Hydra's output dir under the CLI) and return its summary.
    A folder that holds an unfinished run with the same overrides is resumed from its last
    checkpoint; a finished one is left as it is and its summary returned; one that holds another
    run, or that another process trains in, is refused (RunFolderError) with nothing changed."""
    run_dir, overrides = _run_dir_and_overrides(run_dir)
    with Run.open(cfg, run_dir, overrides) as one:
        return one.previous if one.previous is not None else one.fit()


def _run_dir_and_overrides(run_dir: str | Path | None) -> tuple[Path, list[str]]:
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        return Path(run_dir or hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
    if run_dir is None:
        run_dir = Path("outputs/runs") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _log_to(run_dir / "train.log")  # Hydra does this for CLI runs
    return run_dir, []


def _log_to(path: Path) -> None:
    handler = log_handler(path)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_dlbench_run_log", False)]:
        root.removeHandler(old)
        old.close()
    handler._dlbench_run_log = True
    root.addHandler(handler)
    log.setLevel(logging.INFO)
