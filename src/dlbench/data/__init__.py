"""Datasets as in-memory tensors on the run's device, and the batches cut from them.

A *source* (registered by name) returns the raw uint8 images of the train and test sets;
`build_dataset` splits off validation, applies `limit`, converts and normalises once on the device.
"""
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
from torch.nn import functional as F

from dlbench.data.loader import SAMPLERS, Batches, Oversample


class DataNotFoundError(FileNotFoundError):
    pass


@dataclass
class RawData:
    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]


@dataclass
class Split:
    x: torch.Tensor  # (N, ...) on the run's device: normalised images (N, C, H, W), points (N, 2), tokens (N, 2)
    y: torch.Tensor  # (N,) int64 class ids, or (N, outputs) float32 regression targets
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None  # per batch, on the device (see prepare)

    def __len__(self) -> int:
        return len(self.y)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as the model sees it: x itself, or x resized (dataset.resize) or turned into
        features (the playground's x1*x2, sin(x1), ...). Per batch, because the whole of
        Fashion-MNIST at 224x224 would be 54,000 x 224 x 224 floats = 10.8 GB; one batch of 64 is 13 MB."""
        return x if self.transform is None else self.transform(x)


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Normalising before resizing is the same as after: bilinear interpolation is affine."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)  # antialias matters only when shrinking


@dataclass
class Dataset:
    """Any in-memory dataset but text: images from files, or data generated from a seed
    (dlbench.data.synthetic). `task` picks how a run trains on it (dlbench.train.TASKS)."""
    name: str
    train: Split
    val: Split | None
    test: Split | None
    classes: list[str]  # class names; empty for regression
    mean: list[float] | None = None  # images: per channel, of the training split, in [0, 1] pixel units
    std: list[float] | None = None
    sampler: str | None = None  # how training batches are drawn: None (a permutation) or a SAMPLERS key
    task: str = "classify"
    metric: str = "acc"  # what best/ and the target follow: acc (higher is better) or loss (lower is)
    steps_per_epoch: int | None = None  # None: an epoch is one pass; N: N steps (long runs on small sets)

    @property
    def class_counts(self) -> torch.Tensor:
        """Training examples per class, (num_classes,) on the data's device."""
        return torch.bincount(self.train.y, minlength=self.num_classes)

    def train_batches(self, batch_size: int, generator: torch.Generator, transform=None) -> Batches:
        sampler = SAMPLERS[self.sampler](self.train.y) if self.sampler else None
        return Batches(self.train, batch_size, shuffle=True, generator=generator, sampler=sampler,
                       transform=transform, steps=self.steps_per_epoch)

    @property
    def images(self) -> bool:
        return self.train.x.dim() == 4

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Of one example as the model sees it (after any resize or feature map)."""
        return tuple(self.train.prepare(self.train.x[:1]).shape[1:])

    @property
    def num_classes(self) -> int:
        """The model's outputs: one per class, or per regression target."""
        return self.train.y.shape[1] if self.train.y.is_floating_point() else len(self.classes)

    def eval_splits(self) -> dict[str, Split]:
        splits = {"val": self.val, "test": self.test}
        return {k: v for k, v in splits.items() if v is not None and len(v)}

    @property
    def held_out(self) -> Split:
        """The split probes measure on: test, or validation where there is no test split."""
        return self.test if self.test is not None else self.val


SOURCES: dict[str, Callable[..., RawData]] = {}


class DataShape(NamedTuple):
    in_shape: tuple[int, ...]  # of one example, as the model sees it (after dataset.resize)
    num_classes: int
    task: str                  # a key of dlbench.train.TASKS: classify, lm, regress, modular, points


# the shape of a dataset from its config alone, without reading files (`dlbench info` uses it)
SHAPES: dict[str, Callable[..., DataShape]] = {}


def data_shape(node) -> DataShape:
    """From the table when the dataset is in it, else by building the dataset (slower, but right)."""
    if node.name in SHAPES:
        return SHAPES[node.name](node)
    from dlbench.config import build

    data = build(node)
    return DataShape(tuple(data.in_shape), data.num_classes, data.task)


def register_source(fn: Callable[..., RawData]) -> Callable[..., RawData]:
    if fn.__name__ in SOURCES:
        raise ValueError(f"dataset source {fn.__name__!r} is registered twice")
    SOURCES[fn.__name__] = fn
    return fn


def load_source(name: str, **kwargs) -> RawData:
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(SOURCES))}")
    return SOURCES[name](**kwargs)


def make_imbalanced(train_idx: torch.Tensor, labels: torch.Tensor, classes: list[int], keep: float) -> torch.Tensor:
    """Keep only the first `keep` fraction (of the already shuffled order) of each chosen class."""
    keep_mask = torch.ones(len(train_idx), dtype=torch.bool)
    for k in classes:
        of_class = torch.nonzero(labels[train_idx] == k).flatten()
        keep_mask[of_class[math.ceil(keep * len(of_class)):]] = False
    return train_idx[keep_mask]


def corrupt_labels(labels: torch.Tensor, fraction: float, num_classes: int, seed: int) -> torch.Tensor:
    """Replace exactly round(fraction * N) labels, chosen at random, by uniformly random classes
    (which may by chance be the true one), as in Zhang et al., "Understanding deep learning
    requires rethinking generalization". fraction 1.0: random labels."""
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(labels), generator=gen)[:round(fraction * len(labels))]
    noisy = labels.clone()
    noisy[chosen] = torch.randint(0, num_classes, (len(chosen),), generator=gen)
    return noisy


def build_dataset(name: str, val_split: float = 0.1, limit: int | None = None, seed: int = 0,
                  device: str | torch.device = "cpu", imbalance: dict | None = None, sampler: str | None = None,
                  resize: int | None = None, label_noise: float = 0.0, **source_kwargs) -> Dataset:
    if sampler is not None and sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: null, {', '.join(SAMPLERS)}")
    raw = load_source(name, **source_kwargs)
    perm = torch.randperm(len(raw.train_y), generator=torch.Generator().manual_seed(seed))
    n_val = round(val_split * len(perm))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if imbalance:  # only the training split: validation and test keep the true distribution
        train_idx = make_imbalanced(train_idx, raw.train_y, list(imbalance["classes"]), imbalance["keep"])
    if limit is not None:
        train_idx = train_idx[:limit]
    train_u8 = raw.train_x[train_idx]
    train_y = raw.train_y[train_idx]
    if label_noise:  # training labels only: validation and test stay true, so they measure generalisation
        train_y = corrupt_labels(train_y, label_noise, len(raw.classes), seed)
    # per-channel statistics of the training split only; float64 so 54k images sum exactly enough
    mean = train_u8.double().mean(dim=(0, 2, 3)) / 255
    std = train_u8.double().std(dim=(0, 2, 3)) / 255

    def to_split(x_u8: torch.Tensor, y: torch.Tensor) -> Split:
        x = x_u8.to(device).float().div_(255)  # move as uint8 (4x fewer bytes), convert there
        x.sub_(mean.float().to(device).view(1, -1, 1, 1)).div_(std.float().to(device).view(1, -1, 1, 1))
        return Split(x, y.to(device=device, dtype=torch.long), 
                     transform=partial(resize_images, size=resize) if resize else None)

    return Dataset(
        name=name,
        train=to_split(train_u8, train_y),
        val=to_split(raw.train_x[val_idx], raw.train_y[val_idx]) if n_val else None,
        test=to_split(raw.test_x, raw.test_y),
        classes=list(raw.classes),
        mean=mean.tolist(),
        std=std.tolist(),
        sampler=sampler,
    )


from dlbench.data import text, vision  # noqa: E402,F401  (registers the sources and their shapes)

__all__ = ["Batches", "Dataset", "DataNotFoundError", "DataShape", "Oversample", "RawData", "Split", "SHAPES",
           "SOURCES", "build_dataset", "data_shape", "load_source", "register_source"]
