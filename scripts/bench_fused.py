"""The fused launcher against the basic one, in one invocation: the same sweep trained both ways,
each as the whole `dlbench train -m` command a user types (process start, data, every run's files),
and the ratio of their wall times. Targets (issue 14): >= 5x for 8 function-fitting runs and
>= 1.5x for the 4-rate MLP sweep on Fashion-MNIST, on a 2-core CPU.

Two ratios are printed. "command" is the whole command's wall time. "runs" is the time from the
first run's first line in its train.log to the last run's last line: the runs' building, training,
evaluation and files, without the process start, Hydra's composing and the report, which no
launcher can share. It also checks that both launchers wrote the same numbers: each run's status,
and its test/loss to 1e-3 (relative) where it completed. Not closer: summing a matmul in another
order moves the 1,688-step MLP runs by a few 1e-4, as much as training alone with 1 thread
instead of 2 does (lr 0.1: test/loss 0.414944 vs 0.414751 after one epoch); a diverged run's
last loss magnifies rounding without bound.

    python scripts/bench_fused.py [--only fit,mlp] [--repeats 1]
    python scripts/bench_fused.py --only fit,fit64,mlp --device cuda     (8 and 64 small runs on a GPU)
    python scripts/bench_fused.py --only function_fit,playground,gradient_norm,trajectory [--rounding]

`--rounding` also trains each sweep with the basic launcher and every linear layer's product
rounded once from float64 (scripts/rounded_differently.py), and prints how far that moves its
numbers: the scale on which to read the fused launcher's differences, since a long run magnifies
any rounding difference.

A study's name times its whole command, `dlbench train experiment=NAME` (a study that trains its
runs fused) against the same with `hydra/launcher=basic`, analyses and report included.

Run it with nothing else on the machine.
"""
import argparse
import re
from datetime import datetime
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from dlbench.run.runfolder import read_summary

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["trainer.progress=false"]
SWEEPS = {
    # the function_fit study's setup (sinc, ~570 parameters, 2 hidden layers), 8 seeds, 3,000 Adam steps each
    "fit": ["dataset=function", "model=sized_mlp", "model.params=570", "model.depth=2", "model.activation=leaky_relu",
            "optimizer=adam", "loss=mse", "lr=0.0012", "optimizer.weight_decay=1e-4", "batch_size=64", "epochs=30",
            "seed=0,1,2,3,4,5,6,7"],
    # the README's tour sweep: the default MLP 512-512 on Fashion-MNIST, plain SGD at four rates, 2 epochs
    "mlp": ["lr=1,0.1,0.01,0.001", "epochs=2"],
}
# 64 function fits: the same setup, 8 rates x 8 seeds, 10 epochs (1,000 steps) each (for a GPU, issue 14)
SWEEPS["fit64"] = [*(o for o in SWEEPS["fit"] if o.split("=")[0] not in ("lr", "epochs")),
                   "lr=0.0003,0.0006,0.0012,0.0024,0.005,0.01,0.02,0.04", "epochs=10"]


def commands(name: str, extra: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """The basic and the fused launcher's `dlbench train` arguments for a sweep or a study."""
    if name in SWEEPS:
        return ["-m", *SWEEPS[name], *extra], ["-m", *SWEEPS[name], *extra, "hydra/launcher=fused"]
    return ([f"experiment={name}", *extra, "hydra/launcher=basic"],
            [f"experiment={name}", *extra, "hydra/launcher=fused"])


def timed(args: list[str], folder: Path, rounded: bool = False) -> tuple[float, float]:
    """The command's wall seconds, and its runs' (first train.log line to last). `rounded`: with
    each linear layer's product rounded once from float64 (scripts/rounded_differently.py)."""
    start = time.perf_counter()
    program = [str(ROOT / "scripts" / "rounded_differently.py")] if rounded else ["-m", "dlbench"]
    proc = subprocess.run([sys.executable, *program, "train", *args, *QUIET, "--into", str(folder)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CI": "1"})
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"dlbench train {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    stamps = [stamp for log in folder.glob("*/train.log") for stamp in log_times(log)]
    return seconds, (max(stamps) - min(stamps)).total_seconds()


def log_times(log: Path) -> list[datetime]:
    """The first and last time stamps of a run's log ([2026-11-23 08:57:25,193][dlbench]...)."""
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", log.read_text(), re.M)
    return [datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in (stamps[0], stamps[-1])]


def outcomes(folder: Path) -> dict[str, tuple]:
    summaries = {p.parent.name: read_summary(p.parent) for p in folder.glob("*/summary.json")}
    return {name: (s["status"], s.get("test/loss")) for name, s in summaries.items()}


def largest_gap(a: dict, b: dict) -> float | None:
    """The largest relative test/loss difference of the completed runs; None where the two sweeps
    do not have the same runs with the same statuses."""
    if a.keys() != b.keys() or any(a[k][0] != b[k][0] for k in a):
        return None
    return max(abs(a[k][1] - b[k][1]) / abs(a[k][1]) for k in a if a[k][0] == "completed" and a[k][1] is not None)


def same_numbers(gap: float | None) -> str:
    """Whether the runs are the same with the same status, and completed ones with the same
    test/loss to 1e-3; with the largest relative test/loss difference."""
    if gap is None:
        return "False (other runs or statuses)"
    return f"{gap <= 1e-3} (largest relative test/loss difference {gap:.1e})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SWEEPS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rounding", action="store_true",
                        help="also train with the basic launcher rounded differently: how far rounding alone moves the numbers")
    parser.add_argument("--device", default=None, help="device=... for every run (cuda: on the GPU)")
    args = parser.parse_args()
    extra = (f"device={args.device}",) if args.device else ()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            basic, fused = [], []
            basic_args, fused_args = commands(name, extra)
            for r in range(args.repeats):  # interleaved, so a busy moment slows both
                basic.append(timed(basic_args, Path(tmp) / f"{name}-basic-{r}"))
                fused.append(timed(fused_args, Path(tmp) / f"{name}-fused-{r}"))
            a, b = outcomes(Path(tmp) / f"{name}-basic-0"), outcomes(Path(tmp) / f"{name}-fused-0")
            statuses = ", ".join(f"{n} {s}" for s, n in sorted(Counter(s for s, _ in a.values()).items()))
            cb, cf = (min(t[0] for t in ts) for ts in (basic, fused))  # the command's seconds
            rb, rf = (min(t[1] for t in ts) for ts in (basic, fused))  # its runs' seconds
            gap = largest_gap(a, b)
            print(f"{name}: {len(a)} runs ({statuses}); fastest of {args.repeats}:\n"
                  f"  command: basic {cb:.1f} s, fused {cf:.1f} s: {cb / cf:.2f}x\n"
                  f"  runs:    basic {rb:.1f} s, fused {rf:.1f} s: {rb / rf:.2f}x\n"
                  f"  same numbers: {same_numbers(gap)}", flush=True)
            if not args.rounding and gap is not None and gap > 1e-3:
                print("  (a chaotic run magnifies rounding without bound: --rounding measures how far rounding "
                      "alone moves these runs)", flush=True)
            if args.rounding:
                timed(basic_args, Path(tmp) / f"{name}-rounded", rounded=True)
                print(f"  basic rounded differently, against basic: "
                      f"{same_numbers(largest_gap(a, outcomes(Path(tmp) / f'{name}-rounded')))}", flush=True)


if __name__ == "__main__":
    main()
