"""`dlbench train` and `dlbench resume`: a run folder made before Hydra starts, Hydra's main, a
SIGTERM recorded as an interruption, and an exit status that tells whether any run failed."""
import logging
import signal
import sys
from contextlib import suppress
from datetime import datetime
from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dlbench.config import CONF_DIR, run_name
from dlbench.errors import DataNotFoundError
from dlbench.sweep import available_cpus, failed_runs, launched, objective_value, recorded_sweep, threads_per_job

log = logging.getLogger("dlbench")

# Hydra flags that print and exit: no run folder is made for them
INFO_FLAGS = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc",
              "--resolve", "--package", "-p"}


def _job(cfg: DictConfig) -> float | None:
    """One run of `dlbench train`, in this process or a launcher's worker. It returns the run's
    `objective` value, which is what a sweeper such as Optuna optimises."""
    import torch  # here: `dlbench train --help` and a bad override answer without loading torch

    from dlbench.train import run

    hydra_cfg = HydraConfig.get()
    threads = cfg.trainer.threads or threads_per_job(hydra_cfg.launcher, available_cpus())
    if threads:
        torch.set_num_threads(threads)
    try:
        summary = run(cfg)
    except DataNotFoundError as err:  # a set-up problem, the same for every run: say it and stop
        sys.exit(f"dlbench: {err}")
    except Exception:
        if hydra_cfg.mode != RunMode.MULTIRUN:
            raise
        # the run recorded itself as failed; a sweep goes on and the exit status tells
        log.exception("run failed: %s", hydra_cfg.runtime.output_dir)
        summary = None
    return objective_value(summary, cfg.objective, str(hydra_cfg.sweeper.get("direction", "maximize")))


_hydra_train = hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")(_job)


def _make_unique_dir(base: Path) -> Path:
    """Create base, or base-2, base-3...: mkdir is atomic, so two runs never get the same folder."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        path = base if i == 1 else base.with_name(f"{base.name}-{i}")
        with suppress(FileExistsError):
            path.mkdir()
            return path
    raise RuntimeError(f"could not create a unique folder next to {base}")


def _with_run_dir(args: list[str]) -> tuple[list[str], Path | None]:
    """Add hydra.run.dir / hydra.sweep.dir with a folder made now, unless the user chose one
    (`--into DIR` is the short spelling)."""
    multirun = "-m" in args or "--multirun" in args
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if "--into" in args:
        at = args.index("--into")
        if at + 1 == len(args):
            sys.exit("dlbench: --into needs a folder")
        args = [*args[:at], f"{key}='{args[at + 1]}'", *args[at + 2:]]
    if any(a.split("=")[0] in INFO_FLAGS for a in args) or any(a.startswith(key + "=") for a in args):
        return args, None
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    if multirun:
        base = Path("outputs/sweeps") / stamp
    else:
        overrides = [a for a in args if "=" in a and not a.startswith(("hydra.", "hydra/", "-"))]
        base = Path("outputs/runs") / (stamp + ("_" + run_name(overrides) if overrides else ""))
    path = _make_unique_dir(base)
    return [*args, f"{key}='{path}'"], path


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def train_main(args: list[str]) -> int:
    args, made = _with_run_dir(args)
    sys.argv = ["dlbench train", *args]  # Hydra reads its overrides from sys.argv
    signal.signal(signal.SIGTERM, _interrupt)  # a killed run is recorded as interrupted
    launched.clear()
    try:
        _hydra_train()
    finally:
        if made is not None:
            with suppress(OSError):
                made.rmdir()  # still empty: Hydra stopped before running (e.g. a bad override)
    # each run's folder tells, wherever it ran: this process, a joblib worker, a submitit job
    failed = [str(run) for sweep_dir, started in launched for run in failed_runs(sweep_dir, started)]
    if failed:
        print(f"dlbench: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def resume_main(args: list[str]) -> int:
    if len(args) != 1:
        sys.exit("usage: dlbench resume RUN_DIR|SWEEP_DIR")
    folder = Path(args[0])
    if (folder / "multirun.yaml").exists():
        return train_main(recorded_sweep(folder))
    overrides_file = folder / ".hydra" / "overrides.yaml"
    if not overrides_file.exists():
        sys.exit(f"dlbench: {folder} is neither a run folder (.hydra/overrides.yaml) nor a sweep folder "
                 "(multirun.yaml)")
    overrides = yaml.safe_load(overrides_file.read_text()) or []
    return train_main([*overrides, f"hydra.run.dir='{folder}'"])
