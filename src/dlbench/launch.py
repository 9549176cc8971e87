"""`dlbench train` and `dlbench resume`: a run folder made before Hydra starts, Hydra's main, a
SIGTERM recorded as an interruption, and an exit status that tells whether any run failed."""
import logging
import os
import re
import shlex
import signal
import sys
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dlbench import study
from dlbench.config import CONF_DIR, compose_or_explain, run_name, sweep_points
from dlbench.errors import USER_ERROR_STATUS, UserError
from dlbench.paths import hydra_quote, user_folder
from dlbench.run import runfolder
from dlbench.run.outcome import DEBUG, debugging, refused_runs
from dlbench.run.provenance import COMMAND
from dlbench.run.runfolder import CONTINUE_FINISHED
from dlbench.status import FINISHED
from dlbench.sweep import available_cpus, failed_runs, launched, recorded_sweep, threads_per_job

log = logging.getLogger("dlbench")

# Hydra flags that print and exit: no run folder is made for them
INFO_FLAGS = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc",
              "--resolve", "--package", "-p"}


def _job(cfg: DictConfig) -> float | None:
    """One run of `dlbench train`, in this process or a launcher's worker. It returns the run's
    `objective` value, which is what a sweeper such as Optuna optimises."""
    import torch  # here: `dlbench train --help` and a bad override answer without loading torch

    from dlbench.run.outcome import job_return
    from dlbench.train import run

    hydra_cfg = HydraConfig.get()
    threads = cfg.trainer.threads
    if threads == "auto" and hydra_cfg.launcher.get("cpus_per_task"):
        cfg.trainer.threads = threads = int(hydra_cfg.launcher.cpus_per_task)  # a cluster task owns its cores
    elif threads is None:
        threads = threads_per_job(hydra_cfg.launcher, available_cpus())
    if isinstance(threads, int):
        torch.set_num_threads(threads)
    try:
        return job_return(cfg, run(cfg))
    except (KeyboardInterrupt, Exception) as err:
        return job_return(cfg, err)


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


def _with_run_dir(args: list[str]) -> tuple[list[str], Path | None, bool]:
    """Add hydra.run.dir / hydra.sweep.dir with a folder made now, unless the user chose one
    (`--into DIR` is the short spelling). Returns the arguments, the folder (None for Hydra's
    flags that print and exit) and whether it was made here."""
    multirun = "-m" in args or "--multirun" in args
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if "--into" in args:
        at = args.index("--into")
        if at + 1 == len(args):
            raise UserError("--into: no folder given; write --into DIR")
        folder = user_folder(args[at + 1], "--into")
        args = [*args[:at], f"{key}={hydra_quote(folder)}", *args[at + 2:]]
    if any(a.split("=")[0] in INFO_FLAGS for a in args):
        return args, None, False
    given = [a for a in args if a.startswith(key + "=")]
    if given:
        from dlbench.overrides import parse_or_explain

        value = parse_or_explain(given[-1:])[0].value()  # Hydra's own reading of the (quoted) folder
        return args, user_folder(value, key), False
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    if multirun:
        base = Path("outputs/sweeps") / stamp
    else:
        overrides = [a for a in args if "=" in a and not a.startswith(("hydra.", "hydra/", "-"))]
        name = re.sub(r"['\"\\]", "", run_name(overrides))  # quoted values: the folder goes in quotes below
        base = Path("outputs/runs") / (stamp + ("_" + name if overrides else ""))
    path = _make_unique_dir(base)
    return [*args, f"{key}={hydra_quote(path)}"], path, True


def preflight(args: list[str]) -> None:
    """Compose the config of every value each sweep override takes (one override varied at a time,
    the others at their first value) and check it: a bad value is answered before any run starts,
    before data loads, and before Hydra writes anything."""
    if any(a.split("=")[0] in INFO_FLAGS for a in args):
        return
    from dlbench import schema

    configs = [compose_or_explain(point) for point in sweep_points([*study.sweep_params(args), *args])]
    for cfg in configs:
        schema.check(cfg)
    if "-m" in args or "--multirun" in args:
        check_hydra(args)
    from dlbench.run.check import check_fit  # torch: only once the overrides are known good

    for cfg in configs:
        check_fit(cfg)


def check_hydra(args: list[str]) -> None:
    """Hydra's own keys as the user set them (on the command line or in an experiment file), checked
    before Hydra starts, as the task's are: a launcher or sweeper that does not exist, a launcher's
    knob out of range, a search's space, sampler, pruner or count: one line naming the key."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException

    from dlbench.errors import ConfigError, first_line
    from dlbench.schema import HYDRA_KNOBS, check_knobs
    from dlbench.search.study import check, is_search

    task = [a for a in args if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    own = [a for a in args if a.lstrip("+~").startswith("hydra") and not a.startswith(("hydra.sweep.dir=", "hydra.run.dir="))]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            cfg = compose(config_name="train", overrides=[*sweep_points([*task, "-m"])[0], *own],
                          return_hydra_config=True)
        except MissingConfigException as err:  # hydra/launcher=nosuch: Hydra's group, its options named
            group = next((a.split("=")[0] for a in own if a.split("=")[0] in str(err)), None)
            valid = GlobalHydra.instance().config_loader().get_group_options(group) if group else []
            chosen = next((a for a in own if a.startswith(f"{group}=")), " ".join(own))
            raise UserError(f"{chosen}: no such option; valid: {', '.join(valid)}" if valid else
                            f"{' '.join(own)}: {first_line(err)}") from None
        except Exception as err:  # noqa: BLE001 - the task's overrides were checked: this is a hydra.* one
            raise UserError(f"{' '.join(own)}: {first_line(err)}") from None
    launcher = str(cfg.hydra.launcher.get("_target_", "")).split(".")[-1]
    check_knobs(cfg.hydra.launcher, HYDRA_KNOBS.get(launcher, {}), "hydra.launcher.")
    if is_search(cfg.hydra.sweeper):
        check(cfg.hydra.sweeper, task, cfg.hydra.launcher)
    elif cfg.hydra.sweeper.get("_target_", "").endswith("BasicSweeper") and cfg.hydra.sweeper.get("max_batch_size") == 0:
        raise ConfigError("hydra.sweeper.max_batch_size", 0, "is the most runs launched at once", "give 1 or more, or null")


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


def train_main(args: list[str], continue_finished: bool = False, command: list[str] | None = None) -> int:
    """`dlbench train ARGS`; continue_finished: a completed run in the folder may train on to more
    epochs (`dlbench resume RUN epochs=N`); command: what the user typed, if not `dlbench train ARGS`."""
    env = {COMMAND: shlex.join(command or ["dlbench", "train", *args])}  # what each run's provenance records
    env.update({DEBUG: "1"} if "--debug" in args else {})
    env.update({CONTINUE_FINISHED: "1"} if continue_finished else {})
    with environment(env):  # what the runs read, in this process or a launcher's worker
        return _train(args)


def _train(args: list[str]) -> int:
    multirun = [a for a in args if a in ("-m", "--multirun")]  # first: Hydra's parser takes flags before overrides only
    args = [*multirun[:1], *(a for a in args if a != "--debug" and a not in multirun)]
    made = folder = None
    signal.signal(signal.SIGTERM, _interrupt)  # a killed run is recorded as interrupted
    launched.clear()
    sacct_said_once.said = False
    logging.getLogger("submitit").addFilter(sacct_said_once)  # once: the logger keeps one of each filter
    try:
        if not any(a.split("=")[0] in INFO_FLAGS for a in args):
            args = study.expand(args)
        args, folder, made = _with_run_dir(args)
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
        started = folder is not None and folder.is_dir() and any(folder.iterdir())
        hint = f"; `dlbench resume {folder}` continues it" if started else ""
        print(f"dlbench: interrupted ({why or 'Ctrl-C'}){hint}", file=sys.stderr)
        return 130
    finally:
        if made:
            with suppress(OSError):
                folder.rmdir()  # still empty: stopped before running (e.g. a bad override)
    # each run's folder tells, wherever it ran: this process, a joblib worker, a submitit job
    failed = [str(run) for sweep_dir, started in launched for run in failed_runs(sweep_dir, started)]
    refused = list(dict.fromkeys(run for sweep_dir, started in launched for run in refused_runs(sweep_dir, started)))
    elsewhere = [run for run in refused if (runfolder.read_summary_or_none(run) or {}).get("status") in FINISHED]
    if elsewhere:  # another process (a second sweep into this folder) trained them: not this sweep's failures
        print(f"dlbench: {len(elsewhere)} run(s) trained by another process: {', '.join(map(str, elsewhere))}",
              file=sys.stderr)
    failed += [str(run) for run in refused if run not in elsewhere and str(run) not in failed]
    if failed:
        print(f"dlbench: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


@contextmanager
def environment(values: dict[str, str]):
    """os.environ with `values` set while the block runs, as it was after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
            return train_main(recorded_sweep(folder), command=["dlbench", "resume", *args])
        overrides = runfolder.read_overrides(folder)
        if overrides is None:
            raise UserError(f"{folder}: neither a run folder (.hydra/overrides.yaml) nor a sweep folder "
                            "(multirun.yaml); give the folder a run or a sweep was trained into")
    except UserError as err:
        print(f"dlbench: {err}", file=sys.stderr)
        return USER_ERROR_STATUS
    given = {o.split("=")[0] for o in extra}
    return train_main([*(o for o in overrides if o.split("=")[0] not in given), *extra, f"hydra.run.dir={hydra_quote(folder)}"],
                      continue_finished="epochs" in given, command=["dlbench", "resume", *args])
