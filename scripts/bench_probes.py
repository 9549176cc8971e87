"""The cost of each probe on one epoch of the default MLP (SGD, batch 64, full Fashion-MNIST
training split), as a ratio to the same epoch without probes, in one process.

Each configuration runs one epoch of a real run (`dlbench.train.run`), timed around the whole
call, so the probes' work at epoch and run end counts too (the run's own epoch_seconds stops
before the epoch-end callbacks). The overhead is (time with the probe - time without) / the
epoch time without; setting up the run (loading data) is the same in both and cancels.
Configurations are interleaved and repeated; medians are compared.

    python scripts/bench_probes.py [--repeats 3] [--probes grad_norm,weight_norm,...] [OVERRIDE ...]
"""
import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from dlbench.artifacts import read_metrics
from dlbench.config import compose
from dlbench.train import run

PROBES = ["grad_norm", "weight_norm", "sharpness", "trajectory", "embeddings"]


def run_seconds(overrides: list[str], run_dir: Path) -> tuple[float, float]:
    """(the whole run, its epoch) in seconds."""
    start = time.perf_counter()
    run(compose(["device=cpu", "epochs=1", "logger.enabled=false", *overrides]), run_dir=run_dir)
    return time.perf_counter() - start, read_metrics(run_dir)[0]["epoch_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probes", default=",".join(PROBES))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    logging.getLogger("dlbench").setLevel(logging.WARNING)
    configs = {"none": [], **{p: [f"probe={p}"] for p in args.probes.split(",")}}
    tmp = Path(tempfile.mkdtemp(prefix="dlbench-probes-"))
    whole: dict[str, list[float]] = {name: [] for name in configs}
    epoch: list[float] = []
    for r in range(args.repeats):
        for name, extra in configs.items():
            total, seconds = run_seconds([*extra, *args.overrides], tmp / f"{name}-{r}")
            whole[name].append(total)
            if name == "none":
                epoch.append(seconds)
        print(f"  repeat {r + 1}: " + "  ".join(f"{n} {t[-1]:.2f}s" for n, t in whole.items()), flush=True)
    base, base_epoch = statistics.median(whole["none"]), statistics.median(epoch)
    print(f"epoch without probes: {base_epoch:.2f} s (run: {base:.2f} s)")
    print(f"{'probe':<12} {'run s':>7} {'added s':>8} {'epoch ratio':>12}")
    for name, values in whole.items():
        added = statistics.median(values) - base
        print(f"{name:<12} {statistics.median(values):7.2f} {added:8.2f} {(base_epoch + added) / base_epoch:12.3f}")

if __name__ == "__main__":
    main()
