"""`dlbench train|resume|report|list|data`: thin dispatch to the modules that do the work."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dlbench.config import GROUPS, build, compose, group_options

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

def cmd_train(args: list[str]) -> int:
    from dlbench.launch import train_main

    return train_main(args)


def cmd_resume(args: list[str]) -> int:
    from dlbench.launch import resume_main

    return resume_main(args)


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
