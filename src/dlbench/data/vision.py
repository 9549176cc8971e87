"""Image sources: MNIST and Fashion-MNIST through torchvision's own parsers, and sklearn's digits.

Files are found in this order: the configured root (torchvision's layout <root>/<Class>/raw),
a system mirror of the original files (.gz or unpacked; Debian's package recompresses them,
so their MD5s differ from torchvision's and torchvision's parser is the check), unpacked into the
root, then torchvision's download. When none works the error names every place tried.
"""
import gzip
import shutil
from functools import partial
from pathlib import Path

import torch

from dlbench import choices
from dlbench.artifacts import atomic_path
from dlbench.data.base import Dataset, DataShape, RawData, Split, corrupt_labels, make_imbalanced, resize_images
from dlbench.data.loader import SAMPLERS
from dlbench.data.registry import SHAPES, load_source, register_source
from dlbench.errors import ConfigError, CorruptFileError, DataNotFoundError, first_line
from dlbench.paths import user_folder
from dlbench.tasks import CLASSIFY

DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}  # source name -> Debian package


def _load(cls, root: Path) -> RawData:
    raw = root / cls.__name__ / "raw"
    try:
        train, test = cls(str(root), train=True), cls(str(root), train=False)
    except Exception as err:  # torchvision's parser: a short or foreign file
        raise CorruptFileError(raw, f"holds a file torchvision cannot parse ({first_line(err)})",
                               "delete the folder: the next run unpacks or downloads the files again") from None
    for split in (train, test):
        if len(split.data) != len(split.targets) or len(split.data) == 0:
            raise CorruptFileError(raw, f"has {len(split.data)} images but {len(split.targets)} labels",
                                   "delete the folder: the next run unpacks or downloads the files again")
    classes = len(train.classes)
    for split, labels in ((train, "train-labels-idx1-ubyte"), (test, "t10k-labels-idx1-ubyte")):
        outside = split.targets[(split.targets < 0) | (split.targets >= classes)].unique()
        if len(outside):  # else a run trains on them and fails far from here (a plot, a confusion matrix)
            raise CorruptFileError(raw / labels, f"holds labels {outside[:5].tolist()} outside the {classes} classes "
                                   f"0..{classes - 1} of {cls.__name__}", "restore the file, or delete the folder: "
                                   "the next run unpacks or downloads the files again")
    return RawData(train.data.unsqueeze(1), train.targets.long(), test.data.unsqueeze(1),
                   test.targets.long(), list(train.classes))


def _raw_names(cls) -> list[str]:
    return [Path(fname).with_suffix("").name for fname, _ in cls.resources]  # without .gz


def _missing_raw_files(cls, raw: Path) -> list[str]:
    return [n for n in _raw_names(cls) if not (raw / n).is_file()]


def _unpack_mirror(cls, mirror: Path, raw: Path) -> str | None:
    """Unpack (or copy) the mirror's files into raw; return why not, or None on success."""
    if not mirror.is_dir():
        return "does not exist"
    found = {n: next((p for p in (mirror / f"{n}.gz", mirror / n) if p.is_file()), None) for n in _raw_names(cls)}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        return f"missing {', '.join(missing)} (.gz or unpacked)"
    raw.mkdir(parents=True, exist_ok=True)
    for name, path in found.items():
        # to a temporary name, renamed when whole: a truncated .gz leaves nothing that a later run trusts
        try:
            with atomic_path(raw / name) as tmp, (gzip.open if path.suffix == ".gz" else open)(path, "rb") as src, \
                    open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError) as err:
            return f"{path} cannot be unpacked ({first_line(err)}); reinstall or replace it"
    return None


def _how_to_get(cls, name: str, raw: Path) -> str:
    files = ", ".join(f for f, _ in cls.resources)
    lines = [f"  - put the original files ({files}) in a folder and set dataset.mirror=FOLDER,",
             f"    or their unpacked forms in {raw}/ (dataset.root, or $DLBENCH_DATA, sets the root)"]
    if name in DEBIAN_PACKAGES:
        pkg = DEBIAN_PACKAGES[name]
        lines.insert(0, f"  - `dlbench data {name}` (as root it installs Debian's {pkg}),"
                        f" or `apt-get install {pkg}` for the system mirror")
    return "\n".join(lines)


def load_idx_dataset(cls, name: str, root: str, mirror: str | None, download: bool) -> RawData:
    root_path = user_folder(root, "dataset.root ($DLBENCH_DATA when set)")
    raw = root_path / cls.__name__ / "raw"
    missing = _missing_raw_files(cls, raw)
    if not missing:
        return _load(cls, root_path)
    tried = [f"{raw} (dataset.root): missing {', '.join(missing)}"]
    if mirror:
        why = _unpack_mirror(cls, Path(mirror), raw)
        if why is None:
            return _load(cls, root_path)
        tried.append(f"{mirror} (dataset.mirror): {why}")
    if download:
        try:
            cls(str(root_path), train=True, download=True)
            cls(str(root_path), train=False, download=True)
            return _load(cls, root_path)
        except Exception as err:  # torchvision raises RuntimeError/URLError/OSError offline
            tried.append(f"torchvision download into {raw}: failed ({str(err).splitlines()[0][:200]})")
    else:
        tried.append("torchvision download: skipped (dataset.download=false)")
    raise DataNotFoundError(
        f"{cls.__name__} data not found. Looked in:\n" + "\n".join(f"  - {t}" for t in tried)
        + "\nTo get it:\n" + _how_to_get(cls, name, raw))


def _standardize(train_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # per-channel statistics of the training split only; float64 so 54k images sum exactly enough
    return train_u8.double().mean(dim=(0, 2, 3)) / 255, train_u8.double().std(dim=(0, 2, 3)) / 255


def _fixed(mean: float, std: float):
    return lambda train_u8: (torch.full((train_u8.shape[1],), mean, dtype=torch.float64),
                             torch.full((train_u8.shape[1],), std, dtype=torch.float64))


# pixels in [0, 1] become (x - mean) / std per channel
NORMALIZE = choices.implement(choices.NORMALIZE, {
    "standardize": _standardize,     # mean 0, std 1 on the training split
    "unit": _fixed(0.0, 1.0),        # [0, 1]: what ToTensor() gives
    "symmetric": _fixed(0.5, 0.5),   # [-1, 1]: ToTensor() then Normalize(0.5, 0.5)
})


def _raw(name: str, resize: int | None, source_kwargs: dict) -> tuple[RawData, int | None]:
    """The source's images, and the side to resize batches to (None when they already have it)."""
    import inspect

    from dlbench.data.registry import SOURCES

    if name in SOURCES and "resize" in inspect.signature(SOURCES[name]).parameters:
        source_kwargs["resize"] = resize  # a source that decodes files resizes as it decodes (image_folder)
    raw = load_source(name, **source_kwargs)
    return raw, None if resize and tuple(raw.train_x.shape[-2:]) == (resize, resize) else resize


def _split(raw: RawData, name: str, val_split: float, seed: int, imbalance: dict | None, limit: int | None):
    """The indices of the validation and training examples among the source's training images."""
    perm = torch.randperm(len(raw.train_y), generator=torch.Generator().manual_seed(seed))
    n_val = round(val_split * len(perm)) if raw.val_x is None else 0  # the source's own val split wins
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if imbalance:  # only the training split: validation and test keep the true distribution
        train_idx = make_imbalanced(train_idx, raw.train_y, list(imbalance["classes"]), imbalance["keep"])
    if limit is not None:
        train_idx = train_idx[:limit]
    if len(train_idx) == 0:
        raise ConfigError("dataset.val_split", val_split, f"leaves none of the {len(perm):,} training examples of "
                          f"{name} to train on", "give a smaller fraction")
    return val_idx, train_idx


def build_dataset(name: str, val_split: float = 0.1, limit: int | None = None, seed: int = 0,
                  device: str | torch.device = "cpu", imbalance: dict | None = None, sampler: str | None = None,
                  resize: int | None = None, label_noise: float = 0.0, normalize: str = "standardize",
                  eval_limit: int | None = None,
                  **source_kwargs) -> Dataset:
    if sampler is not None and sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: null, {', '.join(SAMPLERS)}")
    if normalize not in NORMALIZE:
        raise ValueError(f"unknown normalize {normalize!r}; valid: {', '.join(NORMALIZE)}")
    raw, resize = _raw(name, resize, source_kwargs)
    val_idx, train_idx = _split(raw, name, val_split, seed, imbalance, limit)
    n_val = len(val_idx)
    train_u8 = raw.train_x[train_idx]
    train_y = raw.train_y[train_idx]
    if label_noise:  # training labels only: validation and test stay true, so they measure generalisation
        train_y = corrupt_labels(train_y, label_noise, len(raw.classes), seed)
    mean, std = NORMALIZE[normalize](train_u8)

    def to_split(x_u8: torch.Tensor, y: torch.Tensor) -> Split:
        x = x_u8.to(device).float().div_(255)  # move as uint8 (4x fewer bytes), convert there
        x.sub_(mean.float().to(device).view(1, -1, 1, 1)).div_(std.float().to(device).view(1, -1, 1, 1))
        return Split(x, y.to(device=device, dtype=torch.long), 
                     transform=partial(resize_images, size=resize) if resize else None)

    return Dataset(
        name=name,
        train=to_split(train_u8, train_y),
        val=(to_split(raw.train_x[val_idx[:eval_limit]], raw.train_y[val_idx[:eval_limit]]) if n_val else
             to_split(raw.val_x[:eval_limit], raw.val_y[:eval_limit]) if raw.val_x is not None else None),
        test=to_split(raw.test_x[:eval_limit], raw.test_y[:eval_limit]),
        classes=list(raw.classes),
        mean=mean.tolist(),
        std=std.tolist(),
        sampler=sampler,
        normalize=normalize,
    )


@register_source
def fashion_mnist(root: str, mirror: str | None = None, download: bool = True) -> RawData:
    import torchvision  # here, not at the top: a run without images does not pay its import (about 1 s)

    return load_idx_dataset(torchvision.datasets.FashionMNIST, "fashion_mnist", root, mirror, download)


@register_source
def mnist(root: str, mirror: str | None = None, download: bool = True) -> RawData:
    import torchvision

    return load_idx_dataset(torchvision.datasets.MNIST, "mnist", root, mirror, download)


@register_source
def digits(test_split: float = 0.2) -> RawData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 intensities -> 0..255 so every source hands out the same uint8 range
    x = torch.from_numpy(bunch.images * (255 / 16)).round().to(torch.uint8).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(bunch.target).long()
    # a fixed test split (seed 0), so runs with different seeds are scored on the same images
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = round(test_split * len(y))
    test, train = perm[:n_test], perm[n_test:]
    return RawData(x[train], y[train], x[test], y[test], [str(c) for c in bunch.target_names])


def _image_shape(channels: int, side: int, classes: int):
    def shape(node) -> DataShape:
        size = node.get("resize") or side
        return DataShape((channels, size, size), classes, CLASSIFY, ("train", "val", "test") if node.val_split else
                         ("train", "test"))
    return shape


SHAPES.update({"fashion_mnist": _image_shape(1, 28, 10), "mnist": _image_shape(1, 28, 10),
               "digits": _image_shape(1, 8, 10), "cifar10": _image_shape(3, 32, 10),
               "cifar100": _image_shape(3, 32, 100), "svhn": _image_shape(3, 32, 10)})
