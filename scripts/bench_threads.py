"""Runs sharing one machine: the default MLP on Fashion-MNIST trained alone, two at once and three
at once, with trainer.threads=null (torch's default: every process takes every core),
trainer.threads=auto (dlbench's default: a fair share of the cores, adjusted as runs come and go)
and trainer.threads=1, all in one invocation. Prints each run's throughput as a ratio to one
one-thread run alone.

Targets (issue 14): auto alone as fast as null alone; auto in a pair or a triple at least 0.8x a
one-thread run's throughput per run. Three one-thread runs on two cores can each get at most 2/3
of a core, so for the triple the ratio to threads=1 in the same crowd is printed too.

A run's throughput is its median epoch (training examples over the epoch's seconds, a 2,000-image
test pass included, from metrics.jsonl), so the seconds a process spends starting (imports, data) while the
others already train do not count. Run it with nothing else on the machine.

    python scripts/bench_threads.py [--epochs 4] [--limit 12000] [--modes null,auto,1] [--crowds 1,2,3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def crowd(n: int, threads: str, args, folder: Path) -> list[float]:
    """n default runs started at once with trainer.threads=threads: each one's median examples/s."""
    env = {**os.environ, "DLBENCH_CPU_DIR": str(folder / "cpu")}  # this benchmark's runs share among themselves
    env.pop("OMP_NUM_THREADS", None)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "dlbench", "train", f"trainer.threads={threads}", f"epochs={args.epochs}",
         f"dataset.limit={args.limit}", "dataset.val_split=0", "dataset.eval_limit=2000", "logger=none", "trainer.checkpoint=false",
         "trainer.progress=false", f"seed={i}", "--into", str(folder / f"{threads}-{n}-{i}")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(n)]
    rates = []
    for i, proc in enumerate(procs):
        _, err = proc.communicate()
        if proc.returncode:
            sys.exit(f"run {i} of {n} (threads={threads}) failed:\n{err}")
        lines = (folder / f"{threads}-{n}-{i}" / "metrics.jsonl").read_text().splitlines()
        epochs = [json.loads(line) for line in lines]
        rates.append(args.limit / statistics.median(e["epoch_seconds"] for e in epochs))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit", type=int, default=12000, help="training examples per epoch")
    parser.add_argument("--modes", default="null,auto,1")
    parser.add_argument("--crowds", default="1,2,3")
    args = parser.parse_args()
    modes, crowds = args.modes.split(","), [int(n) for n in args.crowds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        rates = {(mode, n): crowd(n, mode, args, folder) for n in crowds for mode in modes}
        seconds = time.perf_counter() - start
    one = rates[("1", 1)][0] if ("1", 1) in rates else None
    print(f"default MLP, {args.limit} examples x {args.epochs} epochs per run, {os.cpu_count()} cores "
          f"({seconds:.0f} s in all)")
    print(f"{'runs':>4}  {'threads':>7}  {'examples/s per run':>26}  {'vs one 1-thread run alone':>26}  "
          f"{'vs threads=1 in the same crowd':>30}")
    for (mode, n), values in rates.items():
        shown = " ".join(f"{v:,.0f}" for v in values)
        vs_one = f"{min(values) / one:.2f}x (worst run)" if one else "-"
        same = rates.get(("1", n))
        vs_same = f"{min(values) / statistics.mean(same):.2f}x" if same else "-"
        print(f"{n:>4}  {mode:>7}  {shown:>26}  {vs_one:>26}  {vs_same:>30}")
    if ("null", 1) in rates and ("auto", 1) in rates:
        print(f"alone: auto / null = {rates['auto', 1][0] / rates['null', 1][0]:.2f}x")


if __name__ == "__main__":
    main()
