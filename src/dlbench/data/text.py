"""Character-level text for language models: H. G. Wells' *The Time Machine* as one stream of token
ids on the device, cut into (batch, seq_len) windows by sequential or random partitioning.

The vocabulary is fixed (not counted from the corpus), so a model's output size is known without
reading the file: <unk>, space, a-z. Everything that is not a letter becomes a space, as in the
textbook's preprocessing, so <unk> only appears for unusual characters in a generation prefix.

The text file is found as the image sets are: dataset.path (or $DLBENCH_TIMEMACHINE) alone when
set; else <root>/timemachine/timemachine.txt, the mirror's timemachine.txt, then the copy the
textbook uses, downloaded into the root (kept only when its SHA-1 is the textbook's), so the next
run finds it there. When none works the error names every place tried.
"""
import hashlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from dlbench import choices
from dlbench.data.base import DataShape
from dlbench.data.registry import SHAPES
from dlbench.errors import DataNotFoundError, first_line
from dlbench.paths import user_folder
from dlbench.tasks import LM, Task

VOCAB = ["<unk>", " ", *"abcdefghijklmnopqrstuvwxyz"]
INDEX = {ch: i for i, ch in enumerate(VOCAB)}
FILE = "timemachine.txt"  # looked for as <root>/timemachine/timemachine.txt and <mirror>/timemachine.txt
# the copy Dive into Deep Learning trains on, and the SHA-1 its DATA_HUB checks it against
URL = "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"
SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"
MIRROR = "/usr/share/datasets/timemachine"  # a system-wide folder holding timemachine.txt, for offline machines


def clean(text: str) -> str:
    return re.sub("[^A-Za-z]+", " ", text).lower()


def encode(text: str) -> torch.Tensor:
    return torch.tensor([INDEX.get(ch, 0) for ch in text], dtype=torch.long)


def decode(ids) -> str:
    return "".join(VOCAB[int(i)] for i in ids)


@torch.no_grad()
def generate(model: nn.Module, prefix: str, n: int, device: torch.device | str = "cpu") -> str:
    """The prefix, then n characters, each the most likely one after the text so far (greedy)."""
    model.eval()
    ids = encode(prefix).to(device)
    logits, state = model(ids[None], None)  # warm the state up on the whole prefix
    out = []
    for _ in range(n):
        nxt = logits[0, -1].argmax()
        out.append(int(nxt))
        logits, state = model(nxt.view(1, 1), state)
    return prefix + decode(out)


@dataclass
class TokenSplit:
    tokens: torch.Tensor  # (N,) int64 token ids, on the run's device
    seq_len: int

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.seq_len  # windows of seq_len inputs, each with its targets


class SequentialBatches:
    """Batch row b continues where row b of the previous batch stopped, so the hidden state can be
    carried across batches (detached): the corpus is cut into batch_size streams read side by side."""
    carries_state = True

    def __init__(self, split: TokenSplit, batch_size: int, generator: torch.Generator | None = None):
        self.split, self.generator = split, generator
        self.batch_size = max(1, min(batch_size, len(split)))  # a short split still gives one batch
        self.seq_len = split.seq_len

    def __len__(self) -> int:
        """The batches of every epoch, whatever its offset: a schedule's steps and the check that a run
        has a batch count on them."""
        spare = 0 if self.generator is None else self.seq_len - 1  # a training epoch starts up to T - 1 in
        return max(0, len(self.split.tokens) - 1 - spare) // self.batch_size // self.seq_len

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        tokens, b, t = self.split.tokens, self.batch_size, self.seq_len
        # a random start each training epoch, so the windows' edges fall elsewhere; none for evaluation
        offset = 0 if self.generator is None else int(torch.randint(t, (1,), generator=self.generator))
        n = (len(tokens) - offset - 1) // b * b
        xs = tokens[offset:offset + n].view(b, -1)          # (B, n/B)
        ys = tokens[offset + 1:offset + 1 + n].view(b, -1)  # the next character of each
        for i in range(0, len(self) * t, t):
            yield xs[:, i:i + t], ys[:, i:i + t]  # (B, T), (B, T)


class RandomBatches:
    """Windows taken in a random order: neighbouring batches are unrelated, so each starts from a
    zero state."""
    carries_state = False

    def __init__(self, split: TokenSplit, batch_size: int, generator: torch.Generator | None = None):
        self.split, self.batch_size, self.generator = split, batch_size, generator

    def windows(self) -> int:
        """The windows of every epoch, whatever its offset (the fewest: an offset of T - 1)."""
        t = self.split.seq_len
        return len(range(t - 1, len(self.split.tokens) - t, t))

    def __len__(self) -> int:
        return math.ceil(self.windows() / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        tokens, t = self.split.tokens, self.split.seq_len
        offset = int(torch.randint(t, (1,), generator=self.generator))
        starts = torch.arange(offset, len(tokens) - t, t)  # each window needs t inputs and t targets
        order = torch.randperm(len(starts), generator=self.generator)[:self.windows()]  # as many every epoch
        starts = starts[order].to(tokens.device)
        steps = torch.arange(t, device=tokens.device)
        for i in range(0, len(starts), self.batch_size):
            idx = starts[i:i + self.batch_size, None] + steps  # (B, T)
            yield tokens[idx], tokens[idx + 1]


PARTITIONS = choices.implement(choices.PARTITIONS, {"sequential": SequentialBatches, "random": RandomBatches})


@dataclass
class TextDataset:
    name: str
    train: TokenSplit
    val: TokenSplit | None
    seq_len: int
    partition: str
    clip_grad_norm: float | None  # language-model training clips gradients by this norm
    prefix: str                   # text generated from it at the end of training
    generate_chars: int
    test: None = None
    classes: tuple[str, ...] = tuple(VOCAB)
    task: ClassVar[Task] = LM
    images: ClassVar[bool] = False

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)

    @property
    def num_classes(self) -> int:
        return len(VOCAB)

    def eval_batches(self, split: TokenSplit, batch_size: int) -> SequentialBatches:
        """Sequential from the start, the state carried throughout: batch_size is the number of
        streams read side by side, which the language model task keeps equal to training's."""
        return SequentialBatches(split, batch_size)

    def eval_splits(self) -> dict[str, TokenSplit]:
        return {"val": self.val} if self.val is not None and len(self.val) else {}

    def generate(self, model, device: torch.device | str = "cpu") -> str:
        return generate(model, self.prefix, self.generate_chars, device)

    @property
    def class_counts(self) -> torch.Tensor:
        """Training tokens per vocabulary entry (for class-weighted losses)."""
        return torch.bincount(self.train.tokens, minlength=len(VOCAB))

    def train_batches(self, batch_size: int, generator: torch.Generator, transform=None):
        if transform is not None:
            raise ValueError("regularizer=augmentation transforms images; the timemachine text has none")
        return self.batches(self.train, batch_size, generator)

    def batches(self, split: TokenSplit, batch_size: int, generator: torch.Generator | None = None):
        """Training batches (with the run's generator) in the configured partitioning; without a
        generator, evaluation's batches."""
        if generator is None:
            return self.eval_batches(split, batch_size)
        return PARTITIONS[self.partition](split, batch_size, generator)


def download_url(url: str, root: str, filename: str) -> None:
    """torchvision's download_url, imported only when a file is fetched: torchvision's import is slow."""
    from torchvision.datasets.utils import download_url as fetch

    fetch(url, root, filename)


def _download(dest: Path) -> str | None:
    """Fetch d2l's copy to dest, kept only if its SHA-1 is d2l's; return why not, or None on success."""
    part = dest.with_name(f".{dest.name}.download")
    try:
        part.unlink(missing_ok=True)  # without an md5 download_url takes a file already there as done
        download_url(URL, str(dest.parent), part.name)
        sha1 = hashlib.sha1(part.read_bytes()).hexdigest()
        if sha1 != SHA1:
            return f"the file's SHA-1 is {sha1}, not d2l's {SHA1}; not kept"
        os.replace(part, dest)  # renamed when whole and right: a later run trusts whatever is at dest
        return None
    except Exception as err:  # urllib's URLError/HTTPError, OSError offline or on an unwritable root
        return f"failed ({first_line(err, 200)})"
    finally:
        part.unlink(missing_ok=True)


def find_corpus(path: str | None, root: str, mirror: str | None = MIRROR, download: bool = True) -> Path:
    """The text file: dataset.path if set, else <root>/timemachine/, the mirror, then d2l's download into the root."""
    if path:  # an explicit file and nothing else: a typo must not quietly train on another copy
        where = Path(path).expanduser()
        if where.is_file():
            return where
        raise DataNotFoundError(f"The Time Machine text not found at {where} (dataset.path, or $DLBENCH_TIMEMACHINE): "
                                f"no such file; correct the path, or unset both to look in the data root, the "
                                f"mirror, then download it")
    home = user_folder(root, "dataset.root ($DLBENCH_DATA when set)") / "timemachine" / FILE
    if home.is_file():
        return home
    tried = [f"{home} (dataset.root): does not exist"]
    if mirror:
        copy = Path(mirror).expanduser() / FILE
        if copy.is_file():
            return copy  # read where it is: unlike torchvision's sets, nothing needs it in the root's layout
        tried.append(f"{copy} (dataset.mirror): does not exist")
    if download:
        why = _download(home)
        if why is None:
            return home
        tried.append(f"download of {URL} into {home}: {why}")
    else:
        tried.append("download: skipped (dataset.download=false)")
    raise DataNotFoundError(
        "The Time Machine text not found. Looked in:\n" + "\n".join(f"  - {t}" for t in tried)
        + f"\nTo get it:\n  - download {URL} to {home} (dataset.root, or $DLBENCH_DATA, sets the root),"
          f"\n    or into {Path(mirror or MIRROR)}/ (dataset.mirror) for every user of the machine"
          f"\n  - or put the text anywhere and set dataset.path=FILE (or $DLBENCH_TIMEMACHINE=FILE)")


def build_timemachine(name: str = "timemachine", path: str | None = None, root: str = "~/.cache/dlbench",
                      mirror: str | None = MIRROR, download: bool = True, seq_len: int = 35,
                      partition: str = "sequential", val_split: float = 0.1, limit: int | None = None,
                      clip_grad_norm: float | None = 1.0,
                      prefix: str = "time traveller", generate_chars: int = 50, seed: int = 0,
                      device: str | torch.device = "cpu") -> TextDataset:
    # seed is accepted like every dataset's, but the split is deterministic: the tail is validation
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition {partition!r}; valid: {', '.join(PARTITIONS)}")
    tokens = encode(clean(find_corpus(path, root, mirror, download).read_text(encoding="utf-8")))
    n_val = round(val_split * len(tokens))
    train, val = tokens[:len(tokens) - n_val], tokens[len(tokens) - n_val:]  # the held-out tail
    if limit is not None:
        train = train[:limit]
    return TextDataset(name=name, train=TokenSplit(train.to(device), seq_len),
                       val=TokenSplit(val.to(device), seq_len) if n_val else None, seq_len=seq_len,
                       partition=partition, clip_grad_norm=clip_grad_norm, prefix=prefix,
                       generate_chars=generate_chars)


SHAPES["timemachine"] = lambda node: DataShape((node.seq_len,), len(VOCAB), LM,
                                               ("train", "val") if node.val_split else ("train",))
