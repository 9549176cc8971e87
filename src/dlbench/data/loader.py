"""Mini-batches as index slices of one permutation per epoch: no workers, no per-sample work."""
import math
from collections.abc import Iterator

import torch


class Batches:
    def __init__(self, split, batch_size: int, shuffle: bool, generator: torch.Generator | None = None):
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y, n, bs, prepare = self.split.x, self.split.y, len(self.split), self.batch_size, self.split.prepare
        if not self.shuffle:
            for i in range(0, n, bs):
                yield prepare(x[i:i + bs]), y[i:i + bs]  # views: no copy (unless resized)
            return
        # the permutation is drawn on the CPU generator (seeded, checkpointed), then moved once
        order = torch.randperm(n, generator=self.generator).to(x.device, non_blocking=True)
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            yield prepare(x[idx]), y[idx]  # (B, C, H, W), (B,)
