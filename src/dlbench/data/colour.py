"""Colour image sets through torchvision's own parsers: CIFAR-10 and CIFAR-100 (pickled batches) and
SVHN (.mat files), held as uint8 (N, 3, 32, 32) like the grey sets and normalised per channel from the
training split (dataset.normalize).

Found as the grey sets are: dataset.root (torchvision's layout: <root>/cifar-10-batches-py,
<root>/cifar-100-python, <root>/SVHN), then dataset.mirror (a folder holding the original download:
the .tar.gz, or its unpacked folder, or SVHN's .mat files), unpacked or copied into the root, then
torchvision's download. The files are checked by parsing them (torchvision's parser, then the labels
against the classes), not by torchvision's MD5s, which a repacked mirror would fail; when nothing is
found the error names every place tried.
"""
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from dlbench.artifacts import atomic_path
from dlbench.data.base import RawData
from dlbench.data.registry import register_source
from dlbench.errors import CorruptFileError, DataNotFoundError, first_line
from dlbench.paths import user_folder


@dataclass(frozen=True)
class Colour:
    torchvision: str      # the class in torchvision.datasets
    folder: str           # where its files lie under the root
    files: tuple          # the files its parser reads there
    archive: str | None   # the download a mirror may hold packed (CIFAR's .tar.gz)


CIFAR10 = Colour("CIFAR10", "cifar-10-batches-py",
                 (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"), "cifar-10-python.tar.gz")
CIFAR100 = Colour("CIFAR100", "cifar-100-python", ("train", "test", "meta"), "cifar-100-python.tar.gz")
SVHN = Colour("SVHN", "SVHN", ("train_32x32.mat", "test_32x32.mat"), None)


def _parsers(source: Colour):
    """torchvision's class for the source, its MD5 check replaced by a check that the files are there
    (the parse that follows is the check of what they hold)."""
    import torchvision

    base = getattr(torchvision.datasets, source.torchvision)

    class Parsed(base):
        def _check_integrity(self) -> bool:
            return True  # _load below found every file; torchvision's parser reads them next

        def _load_meta(self) -> None:  # CIFAR's, without the MD5 of the meta file
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    return base, Parsed


def _parse(source: Colour, root: Path) -> RawData:
    _, parsed = _parsers(source)
    folder = root / source.folder
    try:
        if source is SVHN:
            train, test = parsed(str(folder), split="train"), parsed(str(folder), split="test")
            x = [torch.from_numpy(s.data).contiguous() for s in (train, test)]
            y = [torch.from_numpy(s.labels).long() for s in (train, test)]
            classes = [str(d) for d in range(10)]
        else:
            train, test = parsed(str(root), train=True), parsed(str(root), train=False)
            x = [torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous() for s in (train, test)]  # NHWC -> NCHW
            y = [torch.tensor(s.targets, dtype=torch.long) for s in (train, test)]
            classes = list(train.classes)
    except Exception as err:  # torchvision's parser: a short, foreign or truncated file
        raise CorruptFileError(folder, f"holds a file torchvision cannot parse as {source.torchvision} "
                               f"({first_line(err)})", "delete the folder: the next run unpacks or downloads the "
                               "files again") from None
    for name, xs, ys in zip(("train", "test"), x, y):
        if xs.dtype != torch.uint8 or tuple(xs.shape[1:]) != (3, 32, 32) or len(xs) != len(ys) or len(xs) == 0:
            raise CorruptFileError(folder, f"holds {name} images of shape {tuple(xs.shape)} ({xs.dtype}) with "
                                   f"{len(ys)} labels, not (N, 3, 32, 32) uint8 images with N labels",
                                   "restore the files, or delete the folder: the next run fetches them again")
        outside = ys[(ys < 0) | (ys >= len(classes))].unique()
        if len(outside):
            raise CorruptFileError(folder, f"holds {name} labels {outside[:5].tolist()} outside the "
                                   f"{len(classes)} classes of {source.torchvision}",
                                   "restore the files, or delete the folder: the next run fetches them again")
    return RawData(x[0], y[0], x[1], y[1], classes)


def _from_mirror(source: Colour, mirror: Path, root: Path) -> str | None:
    """Unpack the mirror's archive, or copy its files, into the root; why not, or None."""
    if not mirror.is_dir():
        return "does not exist"
    if source.archive and (mirror / source.archive).is_file():
        from torchvision.datasets.utils import extract_archive

        try:  # into a temporary folder, renamed when whole: a truncated archive leaves nothing trusted
            staging = root / f".{source.folder}.unpacking"
            shutil.rmtree(staging, ignore_errors=True)
            extract_archive(str(mirror / source.archive), str(staging))
            shutil.rmtree(root / source.folder, ignore_errors=True)
            (staging / source.folder).rename(root / source.folder)
            shutil.rmtree(staging, ignore_errors=True)
            return None
        except (OSError, EOFError, ValueError) as err:
            return f"{mirror / source.archive} cannot be unpacked ({first_line(err)}); replace it"
    here = mirror / source.folder if (mirror / source.folder).is_dir() else mirror  # the unpacked folder, or files
    missing = [f for f in source.files if not (here / f).is_file()]
    if missing:
        packed = f"{source.archive}, or " if source.archive else ""
        return f"holds neither {packed}the files {', '.join(source.files)} (missing {', '.join(missing)})"
    (root / source.folder).mkdir(parents=True, exist_ok=True)
    for name in source.files:
        with atomic_path(root / source.folder / name) as tmp:
            shutil.copyfile(here / name, tmp)
    return None


def load_colour(source: Colour, name: str, root: str, mirror: str | None, download: bool) -> RawData:
    root_path = user_folder(root, "dataset.root ($DLBENCH_DATA when set)")
    folder = root_path / source.folder
    missing = [f for f in source.files if not (folder / f).is_file()]
    if not missing:
        return _parse(source, root_path)
    tried = [f"{folder} (dataset.root): missing {', '.join(missing)}"]
    if mirror:
        root_path.mkdir(parents=True, exist_ok=True)
        why = _from_mirror(source, Path(mirror).expanduser(), root_path)
        if why is None:
            return _parse(source, root_path)
        tried.append(f"{mirror} (dataset.mirror): {why}")
    if download:
        base, _ = _parsers(source)
        try:
            if source is SVHN:
                for split in ("train", "test"):
                    base(str(folder), split=split, download=True)
            else:
                base(str(root_path), train=True, download=True)
            return _parse(source, root_path)
        except Exception as err:  # offline: URLError, OSError, RuntimeError
            tried.append(f"torchvision download into {folder}: failed ({first_line(err)[:200]})")
    else:
        tried.append("torchvision download: skipped (dataset.download=false)")
    packed = f"{source.archive} or its unpacked folder" if source.archive else ", ".join(source.files)
    raise DataNotFoundError(
        f"{source.torchvision} data not found. Looked in:\n" + "\n".join(f"  - {t}" for t in tried)
        + f"\nTo get it:\n  - put the original download ({packed}) in a folder and set dataset.mirror=FOLDER,\n"
        f"    or its files in {folder}/ (dataset.root, or $DLBENCH_DATA, sets the root),\n"
        f"    or let `dlbench data {name}` download it where the network allows")


@register_source
def cifar10(root: str, mirror: str | None = None, download: bool = True) -> RawData:
    return load_colour(CIFAR10, "cifar10", root, mirror, download)


@register_source
def cifar100(root: str, mirror: str | None = None, download: bool = True) -> RawData:
    return load_colour(CIFAR100, "cifar100", root, mirror, download)


@register_source
def svhn(root: str, mirror: str | None = None, download: bool = True) -> RawData:
    return load_colour(SVHN, "svhn", root, mirror, download)
