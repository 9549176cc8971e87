"""Mini-batches as index slices of one permutation per epoch: no workers, no per-sample work."""
import math
from collections.abc import Callable, Iterator

import torch

from dlbench import choices


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


SAMPLERS = choices.implement(choices.SAMPLERS, {"oversample": Oversample})


class Batches:
    """Iterating gives one epoch of (x, y) batches; each pass draws a new order from `generator`.
    `sampler` replaces the plain permutation; `transform` (augmentation) maps each x batch.
    `steps` makes an epoch that many full batches instead of one pass, drawn from as many
    permutations as it takes: a grokking run's 10^4 steps over 4,704 pairs are 100 epochs of 100
    steps, evaluated and checkpointed 100 times instead of 1,000."""

    def __init__(self, split, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
                 sampler: Callable[[torch.Generator | None], torch.Tensor] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, steps: int | None = None):
        self.split, self.batch_size, self.shuffle = split, batch_size, shuffle
        self.generator, self.sampler, self.transform, self.steps = generator, sampler, transform, steps
        if steps is not None:
            self.batch_size = min(batch_size, self.pass_size)  # a batch never holds an example twice

    @property
    def pass_size(self) -> int:
        return len(self.sampler) if self.sampler is not None else len(self.split)

    @property
    def num_examples(self) -> int:
        return self.steps * self.batch_size if self.steps is not None else self.pass_size

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.batch_size)

    def order(self) -> torch.Tensor:
        """One epoch's example indices, drawn on the CPU generator (seeded, checkpointed)."""
        def draw() -> torch.Tensor:
            if self.sampler is not None:
                return self.sampler(self.generator)
            return torch.randperm(len(self.split), generator=self.generator)

        if self.steps is None:
            return draw()
        per_pass = self.pass_size // self.batch_size * self.batch_size  # whole batches of each permutation
        passes = [draw()[:per_pass] for _ in range(math.ceil(self.num_examples / per_pass))]
        return torch.cat(passes)[:self.num_examples]

    @property
    def draws(self) -> bool:
        """Whether an epoch draws an order (from the generator) rather than reading the split in turn."""
        return self.shuffle or self.sampler is not None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch()

    def epoch(self, order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch's batches; `order`: its indices when drawn already (by `order()`)."""
        x, y, bs, prepare = self.split.x, self.split.y, self.batch_size, self.split.prepare
        if not self.draws:
            for i in range(0, len(self.split), bs):
                yield prepare(x[i:i + bs]), y[i:i + bs]  # views: no copy (unless transformed)
            return
        order = (self.order() if order is None else order).to(x.device, non_blocking=True)
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]  # index_select: the same rows as x[idx], in half the time or less
            xb = prepare(x.index_select(0, idx))  # (B, ...), resized or featurised if the dataset says so
            yield (self.transform(xb) if self.transform is not None else xb), y.index_select(0, idx)
