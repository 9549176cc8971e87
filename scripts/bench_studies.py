"""Every study's arms at speed: each arm's training loop against the same model's compute-only bound,
in one process, with the same threads, and the arms over 1.5x flagged.

    python scripts/bench_studies.py                         # every study (a quarter of an hour or more)
    python scripts/bench_studies.py regularisers capacity --steps 30 --threads 1
    python scripts/bench_studies.py regularisers --full --arms none,l2    # full-length arms, epoch by epoch

For each arm of a study's grid (its sweep's product, one seed), two measurements of the arm's own config:

  loop   a real run (`dlbench.train.run`: data on the device, the regularizers, probes and callbacks,
         the task's step) of two epochs capped at --steps batches each where the dataset has a cap
         (dataset.limit); its rate is summary.json's train_examples_per_second
  bound  the same model, optimizer and loss, built by the same code, stepped --steps times on one
         batch of the run's own already on the device, through dlbench's own step (train_one_epoch
         over a list of that one batch: no data path, no callbacks, no regularizer's penalty)

and prints examples/s of each, loop / bound as seconds per example (1.00: nothing but compute), and
the estimated CPU minutes of the arm's full form (its epochs, each of its full form's batches, times the
study's seeds, at the loop's rate; a run that stops early, at a target or by early stopping, takes less),
then each study's total, said to be a GPU study above an hour. An arm over 1.5x is flagged: the data path, a per-step host sync, a
probe or callback, a regulariser's cost. Search studies (their arms are drawn as they go) are skipped.

--full runs each arm's full form instead (one seed, every epoch, as a user's run would: weights that
drift into denormals over a long run show here, not in two short epochs) and prints its first, median
and last epoch's seconds (training and evaluation), its median against the study's first arm's, and the
last epoch's train loss and validation accuracy (to compare runs of one seed with different settings).
"""
import argparse
import functools
import gc
import itertools
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dlbench.artifacts import read_metrics
from dlbench.config import compose
from dlbench.loop import train_one_epoch
from dlbench.overrides import is_grid, parse_or_explain, sweeper_params
from dlbench.run.build import build_state
from dlbench.study.expansion import study_config, studies
from dlbench.train import run

FLAG = 1.5


def arms(name: str) -> list[list[str]]:
    """The overrides of each arm of a study's grid, one seed (a seed sweep keeps its first value)."""
    sweeper = study_config([f"experiment={name}"]).hydra.sweeper
    if not is_grid(sweeper):
        return []
    values = []
    for o in parse_or_explain(sweeper_params(sweeper)):
        key = o.get_key_element()
        vals = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        values.append([f"{key}={v}" for v in (vals[:1] if key == "seed" else vals)])
    return [list(arm) for arm in itertools.product(*values)]


def capped(cfg, steps: int, threads: int) -> list[str]:
    """Overrides that shorten an arm to two epochs of at most `steps` batches, keeping nothing but the summary."""
    short = ["epochs=2", "logger=none", "trainer.checkpoint=false", "trainer.progress=false",
             f"trainer.threads={threads}"]
    if "limit" in cfg.dataset:  # examples, or a text's characters: steps windows of seq_len a row, and a spare
        t = cfg.dataset.get("seq_len")
        short.append(f"dataset.limit={cfg.batch_size * (steps + 1) * t + t if t else cfg.batch_size * steps}")
    if "eval_limit" in cfg.dataset:
        short.append(f"dataset.eval_limit={min(1000, cfg.batch_size * steps)}")
    return short


def bound_rate(cfg, steps: int, folder: Path) -> float:
    """Examples/s of the arm's model stepped on one of its own batches."""
    state, _ = build_state(cfg, folder, [])
    x, y = next(iter(state.train_batches))
    batch = [(x, y)] * steps
    task = state.data.task
    train_one_epoch(state.model, batch[:2], state.loss_fn, state.optimizer, accuracy=not task.regression,
                    forward=task.forward, precision=state.precision)  # warm-up: kernel choice, allocator
    start = time.perf_counter()
    train_one_epoch(state.model, batch, state.loss_fn, state.optimizer, accuracy=not task.regression,
                    forward=task.forward, precision=state.precision)
    return steps * len(x) / (time.perf_counter() - start)


@functools.lru_cache(maxsize=None)  # a study's arms mostly share their data: built once
def _epoch_examples(dataset_yaml: str, seed: int, device: str, batch_size: int) -> int:
    from dlbench.config import build
    from dlbench.runtime import resolve_device

    data = build(OmegaConf.create(dataset_yaml), seed=seed, device=resolve_device(device))
    return len(data.train_batches(batch_size, torch.Generator().manual_seed(0))) * batch_size


def epoch_examples(cfg) -> int:
    """Examples (a text's windows) one epoch of the arm's full form trains on: its batches, times the
    batch size (a dataset with steps_per_epoch, such as the function to fit, counts those)."""
    return _epoch_examples(OmegaConf.to_yaml(cfg.dataset), cfg.seed, str(cfg.device), cfg.batch_size)


def measure(name: str, arm: list[str], steps: int, threads: int, extra: list[str]) -> dict:
    full = compose([f"experiment={name}", *arm, *extra])
    cfg = compose([f"experiment={name}", *arm, *extra, *capped(full, steps, threads)])
    torch.set_num_threads(threads)
    gc.collect()  # the previous arm's garbage, not collected inside this arm's short loop
    with tempfile.TemporaryDirectory() as tmp:
        summary = run(cfg, run_dir=Path(tmp) / "loop")
        bound = bound_rate(cfg, steps, Path(tmp) / "bound")
    loop = summary.get("train_examples_per_second") or float("nan")
    seeds = full.get("seeds") if isinstance(full.get("seeds"), int) else 1
    return {"arm": " ".join(arm) or "(one run)", "loop": loop, "bound": bound, "ratio": bound / loop,
            "minutes": seeds * full.epochs * epoch_examples(full) / loop / 60, "status": summary.get("status")}


def measure_full(name: str, arm: list[str], threads: int, extra: list[str]) -> dict:
    """The arm's full form, one seed: each epoch's seconds, as metrics.jsonl records them."""
    cfg = compose([f"experiment={name}", *arm, *extra, "logger=none", "trainer.checkpoint=false",
                   "trainer.progress=false", f"trainer.threads={threads}"])
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        summary = run(cfg, run_dir=Path(tmp) / "run")
        seconds = [m["epoch_seconds"] for m in read_metrics(Path(tmp) / "run")]
    return {"arm": " ".join(arm) or "(one run)", "seconds": seconds, "status": summary.get("status"),
            "rate": summary.get("train_examples_per_second") or float("nan"),
            "numbers": " ".join(f"{k} {summary[k]:.4f}" for k in ("train/loss", "val/acc") if summary.get(k) is not None)}


def print_full(names: list[str], chosen, threads: int, extra: list[str]) -> None:
    print(f"torch {torch.__version__}, {threads} threads; every epoch of each arm's full form, one seed")
    print(f"{'study':<24} {'epochs':>6} {'first s':>8} {'median s':>8} {'last s':>8} {'train ex/s':>10} "
          f"{'vs first':>8}  arm: its last epoch's numbers")
    for name in names:
        base = None
        for arm in filter(chosen, arms(name)):
            r = measure_full(name, arm, threads, extra)
            median = statistics.median(r["seconds"])
            base = base or median
            status = "" if r["status"] == "completed" else f" ({r['status']})"
            print(f"{name:<24} {len(r['seconds']):>6} {r['seconds'][0]:>8.2f} {median:>8.2f} {r['seconds'][-1]:>8.2f} "
                  f"{r['rate']:>10.0f} {median / base:>8.2f}  {r['arm']}{status}: {r['numbers']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="*", help="default: every study")
    parser.add_argument("--steps", type=int, default=30, help="batches per epoch of the loop, steps of the bound")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--override", action="append", default=[], help="for every arm, e.g. device=cuda")
    parser.add_argument("--full", action="store_true", help="each arm's full form, epoch by epoch")
    parser.add_argument("--arms", help="only the arms whose overrides contain one of these, e.g. none,l2")
    args = parser.parse_args()
    logging.getLogger("dlbench").setLevel(logging.WARNING)
    names = args.studies or list(studies())
    wanted = args.arms.split(",") if args.arms else [""]

    def chosen(arm: list[str]) -> bool:
        return any(w in " ".join(arm) for w in wanted)

    if args.full:
        return print_full(names, chosen, args.threads, args.override)
    first = next((a for n in names for a in arms(n)[:1]), None)
    if first is not None:  # one unmeasured arm first: the process's one-off costs (imports, kernels) land there
        measure(next(n for n in names if arms(n)), first, 2, args.threads, args.override)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.steps} steps; flagged: loop/bound > {FLAG}")
    print(f"{'study':<24} {'loop ex/s':>10} {'bound ex/s':>10} {'loop/bound':>10} {'full min':>9}  arm")
    for name in names:
        todo = list(filter(chosen, arms(name)))
        if not arms(name):
            print(f"{name:<24} (a search: its arms are drawn as it goes; skipped)")
        total = 0.0
        for arm in todo:
            r = measure(name, arm, args.steps, args.threads, args.override)
            total += r["minutes"]
            flag = "  <- over 1.5x" if r["ratio"] > FLAG else ""
            minutes = f"{r['minutes']:.1f}" if math.isfinite(r["minutes"]) else "-"
            status = "" if r["status"] == "completed" else f" ({r['status']})"
            print(f"{name:<24} {r['loop']:>10.0f} {r['bound']:>10.0f} {r['ratio']:>10.2f} {minutes:>9}  "
                  f"{r['arm']}{status}{flag}", flush=True)
        if todo and len(todo) == len(arms(name)):  # a study's total needs every arm
            size = "a GPU study on this CPU" if total > 60 else "fits this CPU"
            print(f"{name:<24} full form: about {total:.0f} CPU min at these rates, every epoch it allows ({size})")


if __name__ == "__main__":
    sys.exit(main())
