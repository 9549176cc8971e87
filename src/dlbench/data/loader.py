"""Mini-batches as index slices of one permutation per epoch: no workers, no per-sample work."""
import math
from collections.abc import Callable, Iterator

import torch


class Oversample:
    """Each epoch draws every class as often as the largest one: minority classes' indices are
    drawn with replacement, the largest class's once each. Only indices move, never images."""

    def __init__(self, labels: torch.Tensor):
        labels = labels.cpu()
        self.by_class = [torch.nonzero(labels == k).flatten() for k in labels.unique()]
        self.per_class = max(len(idx) for idx in self.by_class)

    def __len__(self) -> int:
        return self.per_class * len(self.by_class)

    def __call__(self, generator: torch.Generator | None) -> torch.Tensor:
        picks = [idx if len(idx) == self.per_class
                 else idx[torch.randint(len(idx), (self.per_class,), generator=generator)] for idx in self.by_class]
        order = torch.cat(picks)
        return order[torch.randperm(len(order), generator=generator)]


SAMPLERS = {"oversample": Oversample}


class Batches:
    """Iterating gives one epoch of (x, y) batches; each pass draws a new order from `generator`.
    `sampler` replaces the plain permutation; `transform` (augmentation) maps each x batch."""

    def __init__(self, split, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
                 sampler: Callable[[torch.Generator | None], torch.Tensor] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.split, self.batch_size, self.shuffle = split, batch_size, shuffle
        self.generator, self.sampler, self.transform = generator, sampler, transform

    @property
    def num_examples(self) -> int:
        return len(self.sampler) if self.sampler is not None else len(self.split)

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y, bs, prepare = self.split.x, self.split.y, self.batch_size, self.split.prepare
        if not self.shuffle and self.sampler is None:
            for i in range(0, len(self.split), bs):
                yield prepare(x[i:i + bs]), y[i:i + bs]  # views: no copy (unless resized)
            return
        # the order is drawn on the CPU generator (seeded, checkpointed), then moved once
        order = self.sampler(self.generator) if self.sampler is not None else torch.randperm(
            len(self.split), generator=self.generator)
        order = order.to(x.device, non_blocking=True)
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            xb = prepare(x[idx])  # (B, C, H, W), resized if dataset.resize
            yield (self.transform(xb) if self.transform is not None else xb), y[idx]
