"""`dlbench train` and `dlbench resume`: a run folder made before Hydra starts, Hydra's main, a
SIGTERM recorded as an interruption, and an exit status that tells whether any run failed."""
import logging
import os
import signal
import sys
from contextlib import suppress
from datetime import datetime
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dlbench import runfolder, study
from dlbench.config import CONF_DIR, compose_or_explain, run_name, sweep_points
from dlbench.errors import USER_ERROR_STATUS, DataNotFoundError, RunFolderError, UserError
from dlbench.sweep import available_cpus, failed_runs, launched, objective_value, recorded_sweep, threads_per_job

log = logging.getLogger("dlbench")
debug_flag = False
current: list[Path] = []   # the run folders this process's jobs ran in
refused: list[Path] = []   # runs of a sweep refused their folder (another process, another run): none recorded

# Hydra flags that print and exit: no run folder is made for them
INFO_FLAGS = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc",
              "--resolve", "--package", "-p"}


def _job(cfg: DictConfig) -> float | None:
    """One run of `dlbench train`, in this process or a launcher's worker. It returns the run's
    `objective` value, which is what a sweeper such as Optuna optimises."""
    import torch  # here: `dlbench train --help` and a bad override answer without loading torch

    from dlbench.train import run

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    current.append(Path(hydra_cfg.runtime.output_dir))
    threads = cfg.trainer.threads
    if threads == "auto" and hydra_cfg.launcher.get("cpus_per_task"):
        cfg.trainer.threads = threads = int(hydra_cfg.launcher.cpus_per_task)  # a cluster task owns its cores
    elif threads is None:
        threads = threads_per_job(hydra_cfg.launcher, available_cpus())
    if isinstance(threads, int):
        torch.set_num_threads(threads)
    try:
        summary = run(cfg)
    except UserError as err:
        # the same for every run (no data), or a single run: say it and stop; else the sweep goes on
        if debugging():
            raise
        if isinstance(err, DataNotFoundError) or not multirun:
            print(f"dlbench: {err}", file=sys.stderr)
            sys.exit(USER_ERROR_STATUS)
        print(f"dlbench: run {hydra_cfg.job.num} ({hydra_cfg.runtime.output_dir}): {err}", file=sys.stderr)
        refused.extend([current[-1]] if isinstance(err, RunFolderError) else [])
        summary = None
    except Exception:
        if not multirun:
            raise
        # a program bug: its traceback shows where; the run recorded itself as failed and the sweep goes on
        log.exception("run failed: %s", hydra_cfg.runtime.output_dir)
        summary = None
    return objective_value(summary, cfg.objective, str(hydra_cfg.sweeper.get("direction", "maximize")))


def debugging() -> bool:
    """--debug or HYDRA_FULL_ERROR=1: a user error shows its traceback too."""
    return debug_flag or os.environ.get("HYDRA_FULL_ERROR") == "1"


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
            raise UserError("--into: no folder given; write --into DIR")
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


def preflight(args: list[str]) -> None:
    """Compose the config of every value each sweep override takes (one override varied at a time,
    the others at their first value) and check it: a bad value is answered before any run starts,
    before data loads, and before Hydra writes anything."""
    if any(a.split("=")[0] in INFO_FLAGS for a in args):
        return
    from dlbench import schema, study

    configs = [compose_or_explain(point) for point in sweep_points([*study.sweep_params(args), *args])]
    for cfg in configs:
        schema.check(cfg)
    for cfg in configs:
        schema.check_fit(cfg)


class SacctSaidOnce(logging.Filter):
    """submitit asks `sacct` for its jobs' states, at every poll of a SLURM sweep. On a cluster without
    job accounting (AccountingStorageType=accounting_storage/none, as in scripts/cluster.sh's one-node
    cluster) each poll fails: `sacct` prints "Slurm accounting storage is disabled" and submitit warns
    "Bypassing sacct error ..., status may be inaccurate". The sweep is not harmed (a job's end is read
    from the result file it writes to <sweep>/.submitit/), so the warning is said once, with a pointer."""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in record.getMessage():
            return True
        if self.said:
            return False
        self.said = True
        record.msg, record.args = (f"{record.getMessage()} [dlbench: said once a sweep; on a cluster without job "
                                   "accounting every poll fails, and a job's end is read from its result file "
                                   "in .submitit/ (docs/guide/sweeps.md: SLURM)]"), ()
        return True


sacct_said_once = SacctSaidOnce()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def train_main(args: list[str]) -> int:
    global debug_flag
    debug_flag = "--debug" in args
    args = [a for a in args if a != "--debug"]
    made = None
    signal.signal(signal.SIGTERM, _interrupt)  # a killed run is recorded as interrupted
    launched.clear(), refused.clear(), current.clear()
    sacct_said_once.said = False
    logging.getLogger("submitit").addFilter(sacct_said_once)  # once: the logger keeps one of each filter
    try:
        if not any(a.split("=")[0] in INFO_FLAGS for a in args):
            args = study.expand(args)
        args, made = _with_run_dir(args)
        sys.argv = ["dlbench train", *args]  # Hydra reads its overrides from sys.argv
        preflight(args)
        _hydra_train()
        for sweep_dir, _ in launched:  # every multirun ends with its report (a study's: its own layout)
            write_report(sweep_dir)
    except UserError as err:
        if debugging():
            raise
        print(f"dlbench: {err}", file=sys.stderr)
        return USER_ERROR_STATUS
    except KeyboardInterrupt as why:
        if debugging():
            raise
        folder = launched[-1][0] if launched else (current[-1] if current else None)
        hint = f"; `dlbench resume {folder}` continues it" if folder else ""
        print(f"dlbench: interrupted ({why or 'Ctrl-C'}){hint}", file=sys.stderr)
        return 130
    finally:
        if made is not None:
            with suppress(OSError):
                made.rmdir()  # still empty: stopped before running (e.g. a bad override)
    # each run's folder tells, wherever it ran: this process, a joblib worker, a submitit job
    failed = [str(run) for sweep_dir, started in launched for run in failed_runs(sweep_dir, started)]
    failed += [str(run) for run in refused]
    if failed:
        print(f"dlbench: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def write_report(sweep_dir: Path) -> None:
    try:
        print(study.finish(sweep_dir))
    except UserError as err:  # no run got as far as a folder: the runs' own errors were said
        print(f"dlbench: no report for {sweep_dir}: {err}", file=sys.stderr)


def resume_main(args: list[str]) -> int:
    """`dlbench resume FOLDER [epochs=N ...]`: the run or sweep recorded there, into it again. A
    run folder may be given more epochs (a completed run trains on) or other tolerated knobs."""
    if not args or args[0].startswith("-"):
        raise UserError("resume: no folder given; usage: dlbench resume RUN_DIR|SWEEP_DIR [epochs=N]")
    folder, extra = Path(args[0]), args[1:]
    try:
        if (folder / "multirun.yaml").exists():
            if extra:
                raise UserError(f"{' '.join(extra)}: a sweep is resumed as it was recorded; give a run folder of it "
                                f"to change its epochs (dlbench resume {folder}/<run> {' '.join(extra)})")
            return train_main(recorded_sweep(folder))
        overrides = runfolder.read_overrides(folder)
        if overrides is None:
            raise UserError(f"{folder}: neither a run folder (.hydra/overrides.yaml) nor a sweep folder "
                            "(multirun.yaml); give the folder a run or a sweep was trained into")
    except UserError as err:
        print(f"dlbench: {err}", file=sys.stderr)
        return USER_ERROR_STATUS
    runfolder.continue_finished = any(o.split("=")[0] == "epochs" for o in extra)
    given = {o.split("=")[0] for o in extra}
    return train_main([*(o for o in overrides if o.split("=")[0] not in given), *extra, f"hydra.run.dir='{folder}'"])
