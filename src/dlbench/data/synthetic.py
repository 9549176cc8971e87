"""Datasets generated in memory from the run's seed, no files: the "science of deep learning" toys.

- function: regression of a 1-D function (sinc, sign_sine or any expression in x) on an interval
- modular: a o b mod p for every pair, split by train_fraction (the grokking tasks, Power et al. 2022)
- playground: the TensorFlow Playground's 2-D sets (circle, xor, gauss, spiral) with its noise
- boolean: the truth tables of AND, OR, XOR, ... (the perceptron-and-XOR exercise)

Each returns a `Dataset` whose `task` (dlbench.tasks) says how a run trains on it and what it draws.
"""
import math
from collections.abc import Callable
from functools import partial

import torch

from dlbench import choices
from dlbench.data.base import Dataset, Split, corrupt_labels
from dlbench.tasks import MODULAR, POINTS, REGRESS

# ---------------------------------------------------------------- function fitting (task: regress)

# torch.sinc is the normalised sinc, sin(pi t) / (pi t), with its limit 1 at t = 0
FUNCTIONS = choices.implement(choices.FUNCTIONS_1D, {
    "sinc": "sinc(5 * x)",                 # sin(5 pi x) / (5 pi x)
    "sign_sine": "sign(sin(5 * pi * x))"})  # a square wave: the hard case for smooth nets
EXPRESSION_NAMES = {name: getattr(torch, name) for name in (
    "sin", "cos", "tan", "exp", "log", "sqrt", "abs", "sign", "tanh", "sinc", "sigmoid", "floor", "ceil")}
EXPRESSION_NAMES.update(pi=math.pi, e=math.e)


def function_values(function: str, x: torch.Tensor) -> torch.Tensor:
    """`function` is a name of FUNCTIONS or an expression in x (numbers, + - * / **, the names in
    EXPRESSION_NAMES). A config is code already (its _target_ can name any callable), so eval adds no
    new power; builtins are withheld so that a typo fails with a clear error."""
    expression = FUNCTIONS.get(function, function)
    try:
        y = eval(compile(expression, "dataset.function", "eval"), {"__builtins__": {}}, {**EXPRESSION_NAMES, "x": x})
    except Exception as err:
        raise ValueError(f"dataset.function={function!r} could not be evaluated ({type(err).__name__}: {err}). "
                         f"Give one of {', '.join(FUNCTIONS)} or an expression in x using "
                         f"{', '.join(EXPRESSION_NAMES)}, e.g. 'sin(2 * pi * x) + 0.5 * x'") from None
    try:
        y = torch.as_tensor(y, dtype=x.dtype).expand_as(x)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"dataset.function={function!r} gives a {type(y).__name__}, not a number for each x; "
                         "write an expression in x, e.g. 'sin(2 * pi * x)' (a name such as sin needs its (x))") from None
    if not torch.isfinite(y).all():
        bad = x[~torch.isfinite(y)][0].item()
        raise ValueError(f"dataset.function={function!r} is not finite at x={bad:g} (0/0?); "
                         "write the limit in, as sinc(5 * x) does for sin(5 * pi * x) / (5 * pi * x)")
    return y


def build_function(name: str = "function", function: str = "sinc", interval: tuple[float, float] = (0.0, 1.0),
                   n_train: int = 1000, n_val: int = 200, n_test: int = 1000, noise: float = 0.0,
                   steps_per_epoch: int | None = None, seed: int = 0, device: str | torch.device = "cpu") -> Dataset:
    """Training and validation inputs drawn uniformly from the interval, their targets with
    Gaussian noise of std `noise`; the test split is an even grid of noise-free targets, so test/loss
    measures the fit to the function itself (and the run's plot draws it)."""
    lo, hi = interval
    gen = torch.Generator().manual_seed(seed)

    def noisy_sample(n: int) -> Split:
        x = lo + (hi - lo) * torch.rand(n, 1, generator=gen)  # (N, 1)
        y = function_values(function, x) + noise * torch.randn(n, 1, generator=gen)
        return Split(x.to(device), y.to(device))

    grid = torch.linspace(lo, hi, n_test).unsqueeze(1)  # (N, 1), sorted for plotting
    train, val = noisy_sample(n_train), noisy_sample(n_val)
    return Dataset(name=name, train=train, val=val if n_val else None,
                   test=Split(grid.to(device), function_values(function, grid).to(device)), classes=[],
                   task=REGRESS, steps_per_epoch=steps_per_epoch)


# ---------------------------------------------------------------- modular arithmetic (task: modular)

OPERATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = choices.implement(choices.OPERATIONS, {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    # a / b = a * b^(p-2) mod p (Fermat); b runs over 1..p-1
    "div": lambda a, b, p: (a * torch.tensor([pow(int(k), p - 2, p) for k in range(p)])[b]) % p,
})


def is_prime(p: int) -> bool:
    return p >= 2 and all(p % k for k in range(2, math.isqrt(p) + 1))


def modular_pairs(p: int, operation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair (a, b) once, (N, 2) int64, and a o b mod p, (N,): p*p pairs, or p*(p-1) for div."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown dataset.operation {operation!r}; valid: {', '.join(OPERATIONS)}")
    if operation == "div" and not is_prime(p):
        raise ValueError(f"dataset.operation=div needs a prime p (every b must have an inverse); p={p} is not")
    a, b = torch.meshgrid(torch.arange(p), torch.arange(1 if operation == "div" else 0, p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    return torch.stack([a, b], dim=1), OPERATIONS[operation](a, b, p)


def build_modular(name: str = "modular", p: int = 97, operation: str = "add", train_fraction: float = 0.5,
                  steps_per_epoch: int | None = 100, threshold: float = 0.99, label_noise: float = 0.0, seed: int = 0,
                  device: str | torch.device = "cpu") -> Dataset:
    """The pairs split without replacement: round(train_fraction * N) train, the rest validation.
    Inputs are the two operands as tokens 0..p-1 (the models embed or one-hot them); there is no
    test split, as in the paper: validation is the unseen pairs. (threshold is read by the run's
    grokking record, dlbench.callbacks.figures.Grokking.)"""
    if not 0 < train_fraction < 1:
        raise ValueError(f"dataset.train_fraction must be in (0, 1); got {train_fraction}")
    x, y = modular_pairs(p, operation)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_train = round(train_fraction * len(y))
    train, val = perm[:n_train], perm[n_train:]
    train_y = corrupt_labels(y[train], label_noise, p, seed) if label_noise else y[train]  # validation stays true
    return Dataset(name=name, train=Split(x[train].to(device), train_y.to(device)),
                   val=Split(x[val].to(device), y[val].to(device)), test=None,
                   classes=[str(k) for k in range(p)], task=MODULAR, steps_per_epoch=steps_per_epoch)


# ---------------------------------------------------------------- 2-D points (task: points)

# the TensorFlow Playground's input features of a point (x1, x2)
FEATURES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = choices.implement(choices.FEATURES, {
    "x1": lambda p: p[:, 0], "x2": lambda p: p[:, 1],
    "x1sq": lambda p: p[:, 0] ** 2, "x2sq": lambda p: p[:, 1] ** 2, "x1x2": lambda p: p[:, 0] * p[:, 1],
    "sin_x1": lambda p: torch.sin(p[:, 0]), "sin_x2": lambda p: torch.sin(p[:, 1]),
})


def point_features(points: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    return torch.stack([FEATURES[n](points) for n in names], dim=1)  # (B, 2) -> (B, features)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, *shape, generator=gen)


# Each maker follows playground.tensorflow.org's dataset.ts: (N, 2) points and labels 1 / 0 (its +1 / -1).
# As there, noise moves the point that decides the label, not the point drawn: labels near the border flip.
def circle(n: int, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    radius = 5.0

    def ring(k: int, r_lo: float, r_hi: float) -> torch.Tensor:
        r, angle = _uniform(k, r_lo, r_hi, gen), _uniform(k, 0, 2 * math.pi, gen)
        return torch.stack([r * torch.sin(angle), r * torch.cos(angle)], dim=1)

    points = torch.cat([ring(n // 2, 0, 0.5 * radius), ring(n - n // 2, 0.7 * radius, radius)])
    moved = points + _uniform(n, -radius, radius, gen, 2) * noise
    return points, (moved.norm(dim=1) < 0.5 * radius).long()


def xor(n: int, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    points = _uniform(n, -5, 5, gen, 2)
    points = points + torch.where(points > 0, 0.3, -0.3)  # a 0.3 margin around the axes
    moved = points + _uniform(n, -5, 5, gen, 2) * noise
    return points, (moved[:, 0] * moved[:, 1] >= 0).long()


def gauss(n: int, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    variance = 0.5 + noise / 0.5 * 3.5  # noise 0..0.5 -> variance 0.5..4
    centres = torch.tensor([[2.0, 2.0], [-2.0, -2.0]])
    labels = torch.cat([torch.ones(n // 2), torch.zeros(n - n // 2)]).long()
    points = centres[1 - labels] + math.sqrt(variance) * torch.randn(n, 2, generator=gen)
    return points, labels


def spiral(n: int, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    def arm(k: int, delta: float) -> torch.Tensor:
        i = torch.arange(k, dtype=torch.float32)
        r, t = i / k * 5, 1.75 * i / k * 2 * math.pi + delta
        arm = torch.stack([r * torch.sin(t), r * torch.cos(t)], dim=1)
        return arm + _uniform(k, -1, 1, gen, 2) * noise

    labels = torch.cat([torch.ones(n // 2), torch.zeros(n - n // 2)]).long()
    return torch.cat([arm(n // 2, 0.0), arm(n - n // 2, math.pi)]), labels


PLAYGROUND = choices.implement(choices.PLAYGROUND_KINDS, {"circle": circle, "xor": xor, "gauss": gauss, "spiral": spiral})


def build_playground(name: str = "playground", kind: str = "circle", n: int = 500, noise: float = 0.0,
                     train_fraction: float = 0.5, features: tuple[str, ...] = ("x1", "x2"), label_noise: float = 0.0,
                     steps_per_epoch: int | None = None, seed: int = 0, device: str | torch.device = "cpu") -> Dataset:
    if kind not in PLAYGROUND:
        raise ValueError(f"unknown dataset.kind {kind!r}; valid: {', '.join(PLAYGROUND)}")
    unknown = [f for f in features if f not in FEATURES]
    if unknown or not features:
        raise ValueError(f"unknown dataset.features {unknown or '[]'}; valid: {', '.join(FEATURES)}")
    gen = torch.Generator().manual_seed(seed)
    points, labels = PLAYGROUND[kind](n, noise, gen)
    perm = torch.randperm(n, generator=gen)
    n_train = round(train_fraction * n)
    to_features = partial(point_features, names=tuple(features))

    def split(idx: torch.Tensor, noise: float = 0.0) -> Split:  # x keeps the points; batches become features
        y = corrupt_labels(labels[idx], noise, 2, seed) if noise else labels[idx]
        return Split(points[idx].to(device), y.to(device), transform=to_features)

    return Dataset(name=name, train=split(perm[:n_train], label_noise), val=None, test=split(perm[n_train:]),
                   classes=["negative", "positive"], task=POINTS, steps_per_epoch=steps_per_epoch)


BOOLEAN = choices.implement(choices.BOOLEAN_FUNCTIONS, {
    "and": lambda a, b: a & b, "or": lambda a, b: a | b, "xor": lambda a, b: a ^ b,
    "nand": lambda a, b: 1 - (a & b), "nor": lambda a, b: 1 - (a | b), "xnor": lambda a, b: 1 - (a ^ b)})


def build_boolean(name: str = "boolean", function: str = "xor", steps_per_epoch: int | None = 100, seed: int = 0,
                  device: str | torch.device = "cpu") -> Dataset:
    """The four rows of a two-input truth table, inputs 0/1. Training and test are the same four
    rows: the question is whether the model can represent the function at all."""
    if function not in BOOLEAN:
        raise ValueError(f"unknown dataset.function {function!r}; valid: {', '.join(BOOLEAN)}")
    a, b = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    table = Split(torch.stack([a, b], dim=1).float().to(device), BOOLEAN[function](a, b).to(device))
    return Dataset(name=name, train=table, val=None, test=table, classes=["false", "true"], task=POINTS,
                   steps_per_epoch=steps_per_epoch)
