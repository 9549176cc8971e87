"""What pruning saves: the same search run without a pruner and with each pruner given, in one invocation,
and the epochs each trained against the best validation accuracy each found.

    python scripts/bench_search.py                      # 24 trials, 10 epochs, Fashion-MNIST: none, median, ASHA
    python scripts/bench_search.py --trials 8 --epochs 3 --pruners median -- dataset=digits

The search: TPE (seed 0) over the learning rate (log, 1e-3 to 0.5), the MLP's width (128 to 1024), SGD's
weight decay (log, 1e-6 to 1e-2) and the dropout rate (0 to 0.5), maximising best/val/acc. Each search
trains into outputs/bench_search/<pruner> (a finished one is read again, not re-run). The figures are
counts and accuracies, not seconds: another job on the machine changes none of them.
Goal (issue 34): a pruned search within 0.5 points of the unpruned best with at most a third of its epochs.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRUNERS = {
    "none": ["hydra.sweeper.pruner.name=none"],
    "median": ["hydra.sweeper.pruner.name=median", "+hydra.sweeper.pruner.n_startup_trials=5",
               "+hydra.sweeper.pruner.n_warmup_steps=1"],
    "asha": ["hydra.sweeper.pruner.name=successive_halving", "+hydra.sweeper.pruner.min_resource=1",
             "+hydra.sweeper.pruner.reduction_factor=3"],
}
SPACE = ["lr=tag(log, interval(1e-3, 0.5))", "model.hidden=choice([128],[256],[512],[1024])",
         "optimizer.weight_decay=tag(log, interval(1e-6, 1e-2))", "regularizer.dropout.rate=interval(0, 0.5)"]


def search(pruner: str, trials: int, epochs: int, extra: list[str]) -> dict:
    folder = ROOT / "outputs" / "bench_search" / pruner
    command = [sys.executable, "-m", "dlbench", "train", "-m", "hydra/sweeper=search", "regularizer=[dropout]",
               f"epochs={epochs}", "logger=none", "trainer.progress=false", "trainer.checkpoint=false",
               f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.sampler.seed=0", "hydra.sweeper.study_name=bench",
               *SPACE, *PRUNERS[pruner], *extra, "--into", str(folder)]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    summaries = [json.loads(p.read_text()) for p in folder.glob("*/summary.json")]
    finished = [s for s in summaries if s.get("status") in ("completed", "pruned")]
    best = max((s["best/val/acc"] for s in finished if s.get("best/val/acc") is not None), default=float("nan"))
    return {"trials": len(summaries), "pruned": sum(s.get("status") == "pruned" for s in summaries),
            "epochs": sum(s.get("epochs_completed") or 0 for s in summaries), "best": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--pruners", default="median,asha", help="compared with none: " + ", ".join(PRUNERS))
    parser.add_argument("extra", nargs="*", help="overrides for every search (after --)")
    args = parser.parse_args()
    results = {name: search(name, args.trials, args.epochs, args.extra)
               for name in ["none", *args.pruners.split(",")]}
    base = results["none"]
    print(f"{args.trials} trials of up to {args.epochs} epochs each")
    print(f"{'pruner':<8} {'trials':>6} {'pruned':>6} {'epochs':>6} {'epochs/none':>11} {'best val acc':>12} "
          f"{'- none (points)':>15}  goal (<= 1/3 of the epochs, within 0.5 points)")
    for name, r in results.items():
        ratio, gap = r["epochs"] / base["epochs"], 100 * (r["best"] - base["best"])
        met = "" if name == "none" else ("met" if ratio <= 1 / 3 and gap >= -0.5 else "not met")
        print(f"{name:<8} {r['trials']:>6} {r['pruned']:>6} {r['epochs']:>6} {ratio:>11.2f} {r['best']:>12.4f} "
              f"{gap:>+15.2f}  {met}")


if __name__ == "__main__":
    main()
