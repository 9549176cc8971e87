"""Time one training epoch of the default MLP (SGD, batch 64, the full Fashion-MNIST training
split) three ways in one process, and print the ratios:

  (a) dlbench's own loop: one epoch of a real run (`dlbench.train.run`, its callbacks included:
      TensorBoard, divergence guard, ...), timed by the run itself (train_examples_per_second)
  (b) the compute-only bound: forward, backward and step on one pre-made batch, as many steps
  (c) the classic per-sample path: torchvision FashionMNIST(transform=ToTensor()) + DataLoader

Targets: a/b <= 1.15 and c/a >= 3. The three are interleaved and repeated, so a busy machine
slows all three alike; ratios are printed of the medians and of the minimums (as timeit does:
the fastest repeat is the one least disturbed by other work on a shared machine).

    python scripts/bench_epoch.py [--repeats 5] [OVERRIDE ...]   (e.g. model.hidden=[1024,1024])
    python scripts/bench_epoch.py device=cuda                     (all three on the GPU)
"""
import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader, Subset
from omegaconf import OmegaConf
from torchvision import transforms

from dlbench.config import build, compose
from dlbench.data import Batches
from dlbench.optim import build_optimizer
from dlbench.runtime import resolve_device
from dlbench.train import run


def fresh(cfg, data):
    torch.manual_seed(cfg.seed)
    model = build(cfg.model, in_shape=data.in_shape, num_classes=data.num_classes).to(resolve_device(cfg.device))
    return model, build_optimizer(cfg.optimizer, model.parameters()), build(cfg.loss)


def time_dlbench(cfg, data, run_dir: Path) -> float:
    """Seconds of training in one epoch of a real run; the run times itself, eval excluded."""
    summary = run(OmegaConf.merge(cfg, {"epochs": 1}), run_dir=run_dir)
    return len(data.train) / summary["train_examples_per_second"]


def time_compute_only(cfg, data, steps: int) -> float:
    model, opt, loss_fn = fresh(cfg, data)
    model.train()
    device = resolve_device(cfg.device)
    x, y = data.train.x[:cfg.batch_size].to(device), data.train.y[:cfg.batch_size].to(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    return time.perf_counter() - start


def time_per_sample(cfg, data, n: int) -> float:
    model, opt, loss_fn = fresh(cfg, data)
    model.train()
    mean, std = data.mean[0], data.std[0]
    ds = torchvision.datasets.FashionMNIST(
        str(Path(cfg.dataset.root).expanduser()), train=True,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))]))
    loader = DataLoader(Subset(ds, range(n)), batch_size=cfg.batch_size, shuffle=True)
    device = resolve_device(cfg.device)
    start = time.perf_counter()
    for x, y in loader:
        loss = loss_fn(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()  # wait for the device
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = compose(["device=cpu", *args.overrides])  # device=cuda times all three on the GPU
    data = build(cfg.dataset, seed=cfg.seed, device="cpu")
    steps = len(Batches(data.train, cfg.batch_size, shuffle=False))
    print(f"{cfg.model.name} {list(cfg.model.get('hidden', []))}, {cfg.optimizer._target_} lr {cfg.lr}, "
          f"batch {cfg.batch_size}, {len(data.train):,} examples = {steps} steps, "
          f"torch {torch.__version__}, device {resolve_device(cfg.device)}, {torch.get_num_threads()} threads")
    times = {"a": [], "b": [], "c": []}
    logging.getLogger("dlbench").setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="dlbench-bench-"))
    for r in range(args.repeats):
        times["a"].append(time_dlbench(cfg, data, tmp / f"run{r}"))
        times["b"].append(time_compute_only(cfg, data, steps))
        times["c"].append(time_per_sample(cfg, data, len(data.train)))
        print(f"  repeat {r + 1}: a {times['a'][-1]:.2f}s  b {times['b'][-1]:.2f}s  c {times['c'][-1]:.2f}s",
              flush=True)
    for label, stat in (("median", statistics.median), ("min", min)):
        a, b, c = (stat(times[k]) for k in "abc")
        print(f"{label}:")
        print(f"  (a) dlbench loop        {a:6.2f} s/epoch  {len(data.train) / a:8,.0f} ex/s")
        print(f"  (b) compute-only bound  {b:6.2f} s/epoch  {len(data.train) / b:8,.0f} ex/s")
        print(f"  (c) per-sample loader   {c:6.2f} s/epoch  {len(data.train) / c:8,.0f} ex/s")
        print(f"  a/b = {a / b:.3f} (target <= 1.15)   c/a = {c / a:.2f} (target >= 3)")

if __name__ == "__main__":
    main()
