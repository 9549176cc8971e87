"""The shapes data takes in memory: raw images, splits of tensors on the run's device, a dataset."""
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.nn import functional as F

from dlbench.data.loader import SAMPLERS, Batches
from dlbench.tasks import CLASSIFY, Task


@dataclass
class RawData:
    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    val_x: torch.Tensor | None = None  # a validation split of the source's own (an image folder's val/);
    val_y: torch.Tensor | None = None  # None: dataset.val_split carves one out of train


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
    (dlbench.data.synthetic). Its `task` (dlbench.tasks) says how a run trains on it and judges it."""
    name: str
    train: Split
    val: Split | None
    test: Split | None
    classes: list[str]  # class names; empty for regression
    mean: list[float] | None = None  # images: per channel, of the training split, in [0, 1] pixel units
    std: list[float] | None = None
    normalize: str | None = None  # images: how pixels were scaled (dlbench.data.vision.NORMALIZE)
    sampler: str | None = None  # how training batches are drawn: None (a permutation) or a SAMPLERS key
    task: Task = CLASSIFY
    steps_per_epoch: int | None = None  # None: an epoch is one pass; N: N steps (long runs on small sets)
    clip_grad_norm: float | None = None  # a norm every run on this data clips gradients to (text sets one)

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

    def eval_batches(self, split: Split, batch_size: int) -> Batches:
        return Batches(split, batch_size, shuffle=False)

    def eval_splits(self) -> dict[str, Split]:
        splits = {"val": self.val, "test": self.test}
        return {k: v for k, v in splits.items() if v is not None and len(v)}

    @property
    def held_out(self) -> Split:
        """The split probes measure on: test, or validation where there is no test split."""
        return self.test if self.test is not None else self.val


class DataShape(NamedTuple):
    in_shape: tuple[int, ...]  # of one example, as the model sees it (after dataset.resize)
    num_classes: int
    task: Task
    splits: tuple[str, ...] = ("train", "val", "test")  # the splits a run measures

    @property
    def images(self) -> bool:
        return len(self.in_shape) == 3

    @property
    def monitor(self) -> str:
        return f"{'val' if 'val' in self.splits else 'test'}/{self.task.metric}"


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


