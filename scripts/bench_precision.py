"""trainer.precision, trainer.compile and trainer.channels_last against fp32 eager, for the CNN and
ResNet-18, in one invocation: the ratio of each variant's training throughput to fp32 eager's.

Each variant trains through dlbench's own loop (`loop.train_one_epoch` with the `Precision` and
`prepare()` a run builds: autocast, the fp16 loss scaler, channels-last inputs, torch.compile) on
one pre-made batch repeated `--steps` times, so the data path is not in it (bench_epoch.py times
that). Every variant warms up first (compile's first steps compile); then rounds interleave the
variants, so that a busy machine slows them all alike, and the median round is reported.

Meant for a GPU (issue 14): on a CPU, bf16 and fp16 autocast run slower than fp32, and only the
numbers' agreement is worth reading. Each variant's mean loss over its first steps is printed
beside fp32's, as a check that it trains the same model.

    python scripts/bench_precision.py --device cuda [--steps 50] [--rounds 5] [--only cnn,resnet18]
    python scripts/bench_precision.py --device cpu --steps 3 --rounds 1 --variants fp32,bf16   (a dry run)
"""
import argparse
import statistics
import time

import torch
from omegaconf import OmegaConf

from dlbench.config import build, compose
from dlbench.loop import train_one_epoch
from dlbench.precision import Precision, prepare
from dlbench.runtime import resolve_device

# model: (overrides, input (C, H, W), batch): ResNet-18 at the 96 px of the classic_cnns study
MODELS = {"cnn": ([], (1, 28, 28), 256), "resnet18": ([], (1, 96, 96), 128)}
VARIANTS = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "fp16": {"precision": 16},
    "channels_last": {"channels_last": True},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
    "compile": {"compile": True},
    "compile+bf16": {"compile": True, "precision": "bf16"},
    "compile+bf16+channels_last": {"compile": True, "precision": "bf16", "channels_last": True},
}


def trainer(model_name: str, overrides: list[str], in_shape: tuple, batch: int, variant: dict, device):
    """A function that trains `steps` steps of this variant and returns the mean loss (after a sync)."""
    torch.manual_seed(0)
    model = build(compose([f"model={model_name}", *overrides]).model, in_shape=in_shape, num_classes=10).to(device)
    options = OmegaConf.create(variant)
    precision = Precision.build(options, device)
    model = prepare(model, options, precision)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *in_shape, generator=generator).to(device)
    y = torch.randint(10, (batch,), generator=generator).to(device)

    def train(steps: int) -> float:
        return train_one_epoch(model, [(x, y)] * steps, loss_fn, optimizer, precision=precision)["loss"]
    return train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=50, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default=",".join(MODELS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    device = resolve_device(args.device)
    variants = args.variants.split(",")
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
             f", {torch.get_num_threads()} threads")
          + f"; median of {args.rounds} rounds x {args.steps} steps, interleaved")
    for name in args.only.split(","):
        overrides, in_shape, batch = MODELS[name]
        runs = {v: trainer(name, overrides, in_shape, batch, VARIANTS[v], device) for v in variants}
        first = {v: train(5) for v, train in runs.items()}  # warm-up (and compilation); the check
        seconds = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v, train in runs.items():
                start = time.perf_counter()
                train(args.steps)
                seconds[v].append(time.perf_counter() - start)
        base = statistics.median(seconds[variants[0]])
        print(f"\n{name} {'x'.join(map(str, in_shape))}, batch {batch}")
        print(f"  {'variant':<28} {'examples/s':>12} {'vs ' + variants[0]:>10} {'first 5 steps loss':>20}")
        for v in variants:
            median = statistics.median(seconds[v])
            print(f"  {v:<28} {batch * args.steps / median:>12,.0f} {base / median:>9.2f}x {first[v]:>20.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
