"""One training step of K runs: each run's own step (torch's optimizer, one model each) against the
fused launcher's step for all K (stacked parameters, batched-matmul forward, vectorised optimizer),
in one invocation, interleaved. Only the step: no evaluation, files or process start (see
bench_fused.py for whole commands). Two cases: the function fits (K=8, 1-23-23-1 MLP, batch 64,
Adam) and the MLP 784-512-512-10 on Fashion-MNIST-sized inputs (K=4, batch 64, plain SGD, one
batch order for all, as in a learning-rate sweep).

Each step's matrix arithmetic is also printed as a rate (GFLOP/s: forward, weight gradients and
input gradients of every layer but the first), beside the rate of one large matmul (2048x2048) in
the same invocation, about the most this machine's cores compute: a step that already runs near
it alone cannot be fused much faster, whatever the launcher does.

    python scripts/bench_fused_step.py [--rounds 8]
"""
import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from dlbench.launchers.fused.model import mlp_forward, mlp_plan
from dlbench.launchers.fused.vectorised import StackedParameters, VectorisedOptimizer


BATCH = 64


def step_flops(dims: list[int], k: int) -> int:
    """The multiply-adds (x2) of K runs' steps: forward and weight gradients of every layer, input
    gradients of every layer but the first."""
    products = [a * b for a, b in zip(dims[:-1], dims[1:])]
    return k * 2 * BATCH * (2 * sum(products) + sum(products[1:]))


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n x n x n float32 matmul, the best of `repeats`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def case(dims: list[int], k: int, optimizer: str, loss: str, shared: bool):
    """(each run's step, the fused step) for K MLPs of these widths."""
    torch.manual_seed(0)
    def make():
        layers = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU()]
        return nn.Sequential(*layers[:-1])

    models = [make() for _ in range(k)]
    n, batch = 20_000, BATCH
    x_all = torch.randn(n, dims[0])
    y_all = torch.randn(n, dims[-1]) if loss == "mse" else torch.randint(dims[-1], (n,))
    build = (lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False)) if optimizer == "adam" else \
        (lambda ps: torch.optim.SGD(ps, lr=0.01, foreach=False))
    alone_opts = [build(m.parameters()) for m in models]
    loss_fn = F.mse_loss if loss == "mse" else F.cross_entropy

    def batches():
        idx = torch.randint(n, (batch,) if shared else (k, batch))
        return x_all[idx], y_all[idx]

    def alone():
        x, y = batches()
        for i, (m, opt) in enumerate(zip(models, alone_opts)):
            opt.zero_grad(set_to_none=True)
            loss_fn(m(x if shared else x[i]), y if shared else y[i]).backward()
            opt.step()

    fused_models = [make() for _ in range(k)]
    names = [name for name, _ in fused_models[0].named_parameters()]
    own = [[dict(m.named_parameters())[name] for name in names] for m in fused_models]
    params = StackedParameters(own)
    stacked = dict(zip(names, params.stacked))
    vectorised = VectorisedOptimizer([build(ps) for ps in own], own, params)
    plan = mlp_plan(fused_models[0])

    def fused():
        x, y = batches()
        params.zero_grad()
        out = mlp_forward(plan, stacked, {}, x, shared, own_layout=not params.flat)
        target = y.expand(k, *y.shape) if shared else y
        if loss == "mse":
            losses = (out - target).square().flatten(1).mean(1)
        else:
            losses = F.cross_entropy(out.flatten(0, 1), target.flatten(), reduction="none").view(k, -1).mean(1)
        losses.sum().backward()
        vectorised.step()

    return alone, fused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    cases = {"function fits, K=8, Adam": (([1, 23, 23, 1], 8, "adam", "mse", False), 100),
             "MLP 784-512-512-10, K=4, SGD": (([784, 512, 512, 10], 4, "sgd", "ce", True), 20)}
    print(f"{torch.get_num_threads()} threads; median (fastest) of {args.rounds} rounds, ms per step of all K runs")
    for name, ((dims, k, *setup), steps) in cases.items():
        alone, fused = case(dims, k, *setup)
        times = {"alone": [], "fused": []}
        for _ in range(args.rounds):
            for kind, fn in (("alone", alone), ("fused", fused)):
                for _ in range(3):
                    fn()
                start = time.perf_counter()
                for _ in range(steps):
                    fn()
                times[kind].append((time.perf_counter() - start) / steps * 1e3)
        a, f = statistics.median(times["alone"]), statistics.median(times["fused"])
        flops = step_flops(dims, k)
        print(f"{name}: each run alone {a:.2f} ms ({min(times['alone']):.2f}), fused {f:.2f} ms "
              f"({min(times['fused']):.2f}): {a / f:.2f}x; matrix arithmetic {flops / 1e6:.1f} MFLOP a step: "
              f"{flops / a / 1e6:.0f} GFLOP/s alone, {flops / f / 1e6:.0f} fused")
    peak = matmul_rate()
    print(f"one 2048x2048 matmul: {peak:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
