"""The fused launcher against the basic one, in one invocation: the same sweep trained both ways,
each as the whole `dlbench train -m` command a user types (process start, data, every run's files),
and the ratio of their wall times. Targets (issue 14): >= 5x for 8 function-fitting runs and
>= 1.5x for the 4-rate MLP sweep on Fashion-MNIST, on a 2-core CPU. It also checks that both
launchers wrote the same numbers (test/loss of every run to 1e-4).

    python scripts/bench_fused.py [--only fit,mlp] [--repeats 1]

Run it with nothing else on the machine.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["trainer.progress=false"]
SWEEPS = {
    # the function_fit study's setup (sinc, ~570 parameters, 2 hidden layers), 8 seeds, 3,000 Adam steps each
    "fit": ["dataset=function", "model=sized_mlp", "model.params=570", "model.depth=2", "model.activation=leaky_relu",
            "optimizer=adam", "loss=mse", "lr=0.0012", "optimizer.weight_decay=1e-4", "batch_size=64", "epochs=30",
            "seed=0,1,2,3,4,5,6,7"],
    # the README's first sweep: the default MLP 512-512 on Fashion-MNIST, plain SGD at four rates, 2 epochs
    "mlp": ["lr=1,0.1,0.01,0.001", "epochs=2"],
}


def timed(args: list[str], folder: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dlbench", "train", "-m", *args, *QUIET, "--into", str(folder)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CI": "1"})
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"dlbench train -m {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds


def losses(folder: Path) -> dict[str, float]:
    summaries = {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/summary.json")}
    return {name: (s["status"], s.get("test/loss")) for name, s in summaries.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SWEEPS))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            basic, fused = [], []
            for r in range(args.repeats):  # interleaved, so a busy moment slows both
                basic.append(timed(SWEEPS[name], Path(tmp) / f"{name}-basic-{r}"))
                fused.append(timed([*SWEEPS[name], "hydra/launcher=fused"], Path(tmp) / f"{name}-fused-{r}"))
            a, b = losses(Path(tmp) / f"{name}-basic-0"), losses(Path(tmp) / f"{name}-fused-0")
            same = a.keys() == b.keys() and all(a[k][0] == b[k][0] and (a[k][1] is None) == (b[k][1] is None) and (
                a[k][1] is None or abs(a[k][1] - b[k][1]) <= 1e-4 * max(1.0, abs(a[k][1]))) for k in a)
            statuses = sorted({status for status, _ in a.values()})
            print(f"{name}: {len(a)} runs ({', '.join(statuses)}); basic {min(basic):.1f} s, fused {min(fused):.1f} s: "
                  f"{min(basic) / min(fused):.2f}x (fastest of {args.repeats}); same test/loss: {same}", flush=True)


if __name__ == "__main__":
    main()
