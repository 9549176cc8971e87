"""Training throughput of every model at its intended input: examples/sec for the image models,
tokens/sec for rnn/gru/lstm as character language models in both implementations (torch, scratch).

Each measurement is forward, backward and an SGD step on one pre-made random batch (the data path
is measured by bench_epoch.py), after warm-up steps that absorb the first-call kernel set-up. On a
shared machine the figures move with the other work on it; take the fastest repeat as the truest.

    python scripts/bench_models.py [--steps 5] [--repeats 3] [--only lenet,lstm] [--device cpu] [--threads 1]
"""
import argparse
import time

import torch

from dlbench.config import build, compose
from dlbench.data import DataShape
from dlbench.data.text import VOCAB
from dlbench.info import dummy_input
from dlbench.models import count_params

# (model, overrides, input (C, H, W) or (T,), batch): the inputs the model configs are made for
IMAGE = [("lenet", [], (1, 28, 28), 64), ("cnn", [], (1, 28, 28), 64), ("mlp", [], (1, 28, 28), 64),
         ("alexnet28", [], (1, 28, 28), 64), ("alexnet", [], (1, 224, 224), 16),
         ("alexnet_small", [], (1, 224, 224), 16), ("vgg", [], (1, 224, 224), 16),
         ("googlenet", [], (1, 96, 96), 16), ("resnet18", [], (1, 96, 96), 16), ("resnet18", [], (1, 28, 28), 64),
         ("lstm", [], (1, 28, 28), 64)]
SEQ_LEN, LM_BATCH = 35, 32  # the textbook's character-LM settings
LM = [(mode, [f"model.impl={impl}"], (SEQ_LEN,), LM_BATCH) for mode in ("rnn", "gru", "lstm")
      for impl in ("torch", "scratch")]


def step_fn(model, x, y, lm: bool):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        out = model(x)
        logits = out[0].flatten(0, 1) if lm else out  # a language model returns (logits, state)
        loss = loss_fn(logits, y.flatten() if lm else y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step


def measure(name, overrides, in_shape, batch, device, steps, repeats) -> tuple[float, int]:
    lm = len(in_shape) == 1
    shape = DataShape(in_shape, len(VOCAB) if lm else 10, "lm" if lm else "classify")
    torch.manual_seed(0)
    model = build(compose([f"model={name}", *overrides]).model, in_shape=in_shape,
                  num_classes=shape.num_classes).to(device).train()
    x = torch.cat([dummy_input(shape) for _ in range(batch)]).to(device)
    y = torch.randint(shape.num_classes, (batch, *in_shape) if lm else (batch,), device=device)
    step = step_fn(model, x, y, lm)
    for _ in range(2):  # warm-up: kernel selection, allocator
        step().item()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        loss.item()  # wait for the device
        best = min(best, (time.perf_counter() - start) / steps)
    return batch * (in_shape[0] if lm else 1) / best, count_params(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="the fastest repeat is reported")
    parser.add_argument("--only", default="", help="comma-separated model names")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(filter(None, args.only.split(",")))
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads; "
          f"fastest of {args.repeats} x {args.steps} steps")
    print(f"{'model':<28} {'input':<12} {'batch':>5} {'params':>12} {'throughput':>18}")
    for name, overrides, in_shape, batch in IMAGE + LM:
        if only and name not in only:
            continue
        rate, params = measure(name, overrides, in_shape, batch, args.device, args.steps, args.repeats)
        label = name + (f" ({overrides[0].split('=')[1]})" if overrides else "")
        unit = "tokens/s" if len(in_shape) == 1 else "examples/s"
        print(f"{label:<28} {'x'.join(map(str, in_shape)):<12} {batch:>5} {params:>12,} {rate:>9,.0f} {unit}",
              flush=True)


if __name__ == "__main__":
    main()
