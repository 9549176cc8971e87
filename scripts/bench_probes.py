"""The cost of each probe on one epoch of the default MLP (SGD, batch 64, full Fashion-MNIST
training split), as a ratio to the same epoch without probes, in one process.

Each configuration runs one epoch of a real run (`dlbench.train.run`); the time is the whole
epoch (training, evaluation and the probes' own work, which happens at epoch end for most of
them). Configurations are interleaved and repeated; the medians are compared.

    python scripts/bench_probes.py [--repeats 3] [--probes grad_norm,weight_norm,...] [OVERRIDE ...]
"""
import argparse
import logging
import statistics
import tempfile
from pathlib import Path

from dlbench.artifacts import read_metrics
from dlbench.config import compose
from dlbench.train import run

PROBES = ["grad_norm", "weight_norm", "sharpness", "trajectory", "embeddings"]


def epoch_seconds(overrides: list[str], run_dir: Path) -> float:
    run(compose(["device=cpu", "epochs=1", "logger.enabled=false", *overrides]), run_dir=run_dir)
    return read_metrics(run_dir)[0]["epoch_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probes", default=",".join(PROBES))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    logging.getLogger("dlbench").setLevel(logging.WARNING)
    configs = {"none": [], **{p: [f"probe={p}"] for p in args.probes.split(",")}}
    tmp = Path(tempfile.mkdtemp(prefix="dlbench-probes-"))
    times: dict[str, list[float]] = {name: [] for name in configs}
    for r in range(args.repeats):
        for name, extra in configs.items():
            times[name].append(epoch_seconds([*extra, *args.overrides], tmp / f"{name}-{r}"))
        print(f"  repeat {r + 1}: " + "  ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()), flush=True)
    base = statistics.median(times["none"])
    print(f"{'probe':<12} {'s/epoch':>8} {'ratio':>7}")
    for name, values in times.items():
        print(f"{name:<12} {statistics.median(values):8.2f} {statistics.median(values) / base:7.3f}")


if __name__ == "__main__":
    main()
