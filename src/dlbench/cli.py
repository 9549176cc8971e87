"""`dlbench train|resume|report|list|data`: thin dispatch to the modules that do the work."""
import logging
import os
import shutil
import signal
import subprocess
import sys
from contextlib import suppress
from datetime import datetime
from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dlbench.config import CONF_DIR, GROUPS, build, compose, group_options, run_name
from dlbench.sweep import available_cpus, failed_runs, launched, objective_value, recorded_sweep, threads_per_job

log = logging.getLogger("dlbench")

USAGE = """usage: dlbench <command> [arguments]

  train [OVERRIDE ...]      train one run:   dlbench train model=cnn lr=0.01
  train -m [OVERRIDE ...]   train a sweep:   dlbench train -m lr=1,0.1,0.01,0.001
  train ... --into DIR      run or sweep into DIR; finished runs there are kept, unfinished resume
  resume RUN_DIR|SWEEP_DIR  continue an interrupted run, or re-run a sweep into its folder
  report SWEEP_DIR ...      the results table (mean ± std over seeds), notes and plots of sweeps
  list                      the datasets, models, optimizers, ... that configs can name
  data [DATASET ...]        make sure a dataset is on disk (default: fashion_mnist)
  interpolate RUN_A RUN_B   loss and accuracy along (1-a) theta_A + a theta_B  [--alphas FROM:TO:N] [--out DIR]
  trajectory RUN [RUN ...]  weights saved by probe=trajectory, on their first 2 principal components
                            [--color METRIC] [--out DIR]
  info [--json] [OVERRIDE ...]  a model's layers, parameters, FLOPs, memory, receptive fields:
                            dlbench info model=alexnet dataset.resize=224 batch_size=128

`dlbench train --help` shows the composed config and every group; `--cfg job` prints it.
"""

# Hydra flags that print and exit: no run folder is made for them
INFO_FLAGS = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc",
              "--resolve", "--package", "-p"}


def _job(cfg: DictConfig) -> float | None:
    """One run of `dlbench train`, in this process or a launcher's worker. It returns the run's
    `objective` value, which is what a sweeper such as Optuna optimises."""
    import torch

    from dlbench.data import DataNotFoundError
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


def cmd_train(args: list[str]) -> int:
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


def cmd_resume(args: list[str]) -> int:
    if len(args) != 1:
        sys.exit("usage: dlbench resume RUN_DIR|SWEEP_DIR")
    folder = Path(args[0])
    if (folder / "multirun.yaml").exists():
        return cmd_train(recorded_sweep(folder))
    overrides_file = folder / ".hydra" / "overrides.yaml"
    if not overrides_file.exists():
        sys.exit(f"dlbench: {folder} is neither a run folder (.hydra/overrides.yaml) nor a sweep folder "
                 "(multirun.yaml)")
    overrides = yaml.safe_load(overrides_file.read_text()) or []
    return cmd_train([*overrides, f"hydra.run.dir='{folder}'"])


def cmd_report(args: list[str]) -> int:
    from dlbench.report import main as report_main

    return report_main(args)


def cmd_list(args: list[str]) -> int:
    from dlbench.models import MODELS

    for group in GROUPS:
        options = group_options(group)
        print(f"{group + ':':<13}{' '.join(options) if options else '(none yet)'}")
    unconfigured = sorted(set(MODELS) - set(group_options("model")))
    if unconfigured:
        print(f"{'':<13}(registered without a config: {' '.join(unconfigured)})")
    return 0


def cmd_data(args: list[str]) -> int:
    from dlbench.data import DataNotFoundError
    from dlbench.data.vision import DEBIAN_PACKAGES

    for name in args or ["fashion_mnist"]:
        if name not in group_options("dataset"):
            sys.exit(f"dlbench: unknown dataset {name!r}; valid: {' '.join(group_options('dataset'))}")
        cfg = compose([f"dataset={name}"])
        try:
            data = build(cfg.dataset)
        except DataNotFoundError as err:
            package = DEBIAN_PACKAGES.get(name)
            if not (package and shutil.which("apt-get") and os.geteuid() == 0):
                sys.exit(f"dlbench: {err}")
            print(f"{name}: not on disk; installing Debian's {package}", flush=True)
            subprocess.run(["apt-get", "update", "-q"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-q", package], check=True)
            data = build(cfg.dataset)
        splits = ", ".join(f"{len(s):,} {k}" for k, s in
                           {"train": data.train, "val": data.val, "test": data.test}.items() if s is not None)
        outputs = f"{data.num_classes} classes" if len(data.classes) else f"{data.num_classes} regression target"
        print(f"{name}: {splits} examples of shape {tuple(data.in_shape)}, {outputs}")
    return 0


def cmd_interpolate(args: list[str]) -> int:
    import argparse

    from dlbench.analysis import interpolate

    parser = argparse.ArgumentParser(prog="dlbench interpolate")
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--alphas", default="-0.5:1.5:21", help="FROM:TO:N, evenly spaced (default -0.5:1.5:21)")
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args(args)
    lo, hi, n = ns.alphas.split(":")
    alphas = [float(lo) + (float(hi) - float(lo)) * i / (int(n) - 1) for i in range(int(n))]
    for row in interpolate(ns.run_a, ns.run_b, alphas, ns.out):
        print("  ".join(f"{k} {v:.4f}" for k, v in row.items()))
    return 0


def cmd_trajectory(args: list[str]) -> int:
    import argparse

    from dlbench.analysis import trajectory

    parser = argparse.ArgumentParser(prog="dlbench trajectory")
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--color", default="val/loss", help="the metric that colours the points")
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args(args)
    rows = trajectory(ns.runs, ns.color, ns.out)
    print(f"{len(rows)} snapshots of {len(ns.runs)} run(s) -> {(ns.out or ns.runs[0].parent / 'trajectory')}")
    return 0



def cmd_info(args: list[str]) -> int:
    import json

    from dlbench.info import info, render

    overrides = [a for a in args if a != "--json"]
    report = info(compose(overrides))
    print(json.dumps(report, indent=2) if "--json" in args else render(report))
    return 0


COMMANDS = {"train": cmd_train, "resume": cmd_resume, "report": cmd_report, "list": cmd_list, "data": cmd_data,
            "info": cmd_info, "interpolate": cmd_interpolate, "trajectory": cmd_trajectory}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if argv[0] not in COMMANDS:
        sys.exit(f"dlbench: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}\n\n{USAGE}")
    sys.exit(COMMANDS[argv[0]](argv[1:]))
