"""Time one sweep with Hydra's basic launcher (one run after the other) and with the joblib
launcher (runs side by side, the cores split between them), then print `dlbench report` of it.

The sweep is 4 learning rates x {mlp, cnn} on Fashion-MNIST, SGD, batch 64:

    python scripts/bench_sweep.py [--epochs 2] [--jobs 2] [OVERRIDE ...]
    python scripts/bench_sweep.py --epochs 1 dataset.limit=2000          (a quick check)

Both sweeps run the same runs into their own folders under --out, and the report of each is
written there (report.md, plots/). Runs whose status differs between the two are named: a run on
the edge of diverging (say the CNN at lr=1) may tip either way with a different thread count.
"""
import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from dlbench.run.runfolder import read_summary


def dlbench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "1"}  # epoch lines, not progress bars
    return subprocess.run([sys.executable, "-m", "dlbench", *args], env=env, capture_output=True, text=True)


def timed_sweep(overrides: list[str], folder: Path, launcher: list[str]) -> float:
    start = time.perf_counter()
    proc = dlbench("train", "-m", *overrides, *launcher, "--into", str(folder))
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the sweep into {folder} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def statuses(folder: Path) -> dict[str, str]:
    return {p.parent.name: read_summary(p.parent)["status"] for p in folder.glob("*/summary.json")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2)")
    parser.add_argument("--lrs", default="1,0.1,0.01,0.001", help="the learning rates (default 1,0.1,0.01,0.001)")
    parser.add_argument("--jobs", type=int, default=2, help="joblib's n_jobs (default 2)")
    parser.add_argument("--out", type=Path, help="folder for both sweeps (default outputs/bench_sweep/<time>)")
    parser.add_argument("overrides", nargs="*", help="more overrides for every run, e.g. dataset.limit=2000")
    args = parser.parse_args()
    out = args.out or Path("outputs/bench_sweep") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} is not empty: its finished runs would be skipped, not timed")
    overrides = [f"lr={args.lrs}", "model=mlp,cnn", "dataset=fashion_mnist", "optimizer=sgd", "batch_size=64",
                 f"epochs={args.epochs}", *args.overrides]
    print(f"sweep: {' '.join(overrides)}  ({os.cpu_count()} CPUs)", flush=True)
    basic = timed_sweep(overrides, out / "basic", [])
    print(f"basic launcher:            {basic:8.1f} s", flush=True)
    joblib = timed_sweep(overrides, out / "joblib", ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"])
    print(f"joblib launcher, n_jobs={args.jobs}: {joblib:8.1f} s")
    print(f"basic / joblib:            {basic / joblib:8.2f}x\n")
    # a run on the edge of diverging may tip either way: a job with fewer threads sums in another order
    ours, theirs = statuses(out / "basic"), statuses(out / "joblib")
    for run in sorted(set(ours) | set(theirs)):
        if ours.get(run) != theirs.get(run):
            print(f"note: {run}: {ours.get(run)} (basic) vs {theirs.get(run)} (joblib)")
    for name in ("joblib", "basic"):  # basic's last: its table is the one printed
        report = dlbench("report", str(out / name), "--rows", "lr", "--cols", "model")
        if report.returncode != 0:
            sys.exit(report.stderr)
    print(report.stdout)


if __name__ == "__main__":
    main()
