"""A folder of a researcher's own images (`dataset=image_folder dataset.path=DIR`), in torchvision's
ImageFolder layout: one folder per class (DIR/cat/*.jpg, DIR/dog/*.png), or the same under DIR/train/,
DIR/val/ and DIR/test/. Every image is decoded once (PIL, as RGB or grey), resized to dataset.resize
(a square side; needed when the images differ in size) and kept as uint8 like the other image sets; the
decoded tensors are cached in DIR/.dlbench/ keyed by the files' names, sizes and times and the decoding
settings, so the next run starts in seconds. An image that cannot be decoded is named and left out; the
others load.

Splits: DIR/train/ and DIR/test/ (or DIR/val/ as the test split when there is no test/) when they
exist, a DIR/val/ beside a DIR/test/ being the validation split (dataset.val_split is then not used);
else the images of DIR/<class>/ with a fixed test split (dataset.test_split, seed 0, as digits has).
"""
import hashlib
import json
import logging
import sys
from pathlib import Path

import torch

from dlbench.data.base import RawData
from dlbench.data.registry import register_source
from dlbench.errors import DataNotFoundError, UserError
from dlbench.paths import user_folder

log = logging.getLogger("dlbench")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # ImageFolder's
CACHE = ".dlbench"


class ImageFolderError(UserError):
    """A folder that does not hold images in the ImageFolder layout, or images that cannot be stacked."""


def _classes(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    return [(p, i) for i, c in enumerate(classes) for p in sorted((folder / c).rglob("*"))
            if p.suffix.lower() in EXTENSIONS and p.is_file()]


def _decode(files: list[tuple[Path, int]], resize: int | None, grey: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) uint8 and (N,) labels; an image that cannot be decoded is said and left out."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    images, labels, bad = [], [], []
    for path, label in files:
        try:
            with Image.open(path) as img:
                img = img.convert("L" if grey else "RGB")
                if resize:
                    img = img.resize((resize, resize), Image.BILINEAR)
                images.append(torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()))
                labels.append(label)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            bad.append(path)
            print(f"dlbench: {path}: not an image PIL can decode ({err}); left out", file=sys.stderr)
    if not images:
        raise ImageFolderError(f"{files[0][0].parent.parent if files else '?'}: no image could be decoded"
                               f"{f' ({len(bad)} tried)' if bad else ''}; check the files")
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        first, other = images[0].shape, next(x.shape for x in images if x.shape != images[0].shape)
        raise ImageFolderError(f"dataset.path: images of different sizes ({tuple(first)} and {tuple(other)}); "
                               "set dataset.resize=SIDE to resize every image to SIDE x SIDE when it is decoded")
    x = torch.stack(images)
    x = x.unsqueeze(1) if grey else x.permute(0, 3, 1, 2)
    return x.contiguous(), torch.tensor(labels, dtype=torch.long)


def _cached(folder: Path, files: list[tuple[Path, int]], resize: int | None, grey: bool):
    """The decoded split, from the cache when the same files with the same settings were decoded before."""
    key = hashlib.sha1(json.dumps([resize, grey, [(str(p.relative_to(folder)), p.stat().st_size,
                                                    p.stat().st_mtime_ns, y) for p, y in files]]).encode()).hexdigest()
    path = folder / CACHE / f"{key[:16]}.pt"
    if path.is_file():
        try:
            return torch.load(path)
        except Exception:  # a cache that cannot be read is made again
            pass
    x, y = _decode(files, resize, grey)
    try:
        from dlbench.artifacts import atomic_path

        path.parent.mkdir(exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save((x, y), tmp)
    except OSError as err:  # a read-only folder: the run goes on, decoding again next time
        print(f"dlbench: {path}: cannot cache the decoded images ({err})", file=sys.stderr)
    return x, y


@register_source
def image_folder(path: str | None = None, resize: int | None = None, grayscale: bool = False,
                 test_split: float = 0.2) -> RawData:
    if not path:
        raise ImageFolderError("dataset.path: not set; give the folder of class folders: dataset.path=DIR")
    root = user_folder(path, "dataset.path")  # a file is named as one
    if not root.is_dir():
        raise DataNotFoundError(f"dataset.path={path}: no such folder; give a folder holding one folder per class "
                                "(DIR/cat/*.jpg, DIR/dog/*.jpg), or train/ and test/ folders of them")
    split_dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    if "train" in split_dirs:
        classes = _classes(split_dirs["train"])
        test_dir = split_dirs.get("test") or split_dirs.get("val")
        if test_dir is None:
            raise ImageFolderError(f"{root}: has train/ but neither test/ nor val/; add one, or put the class "
                                   "folders directly in DIR to have a test split drawn")
        train = _cached(root, _files(split_dirs["train"], classes), resize, grayscale)
        test = _cached(root, _files(test_dir, classes), resize, grayscale)
        val = (_cached(root, _files(split_dirs["val"], classes), resize, grayscale)
               if "val" in split_dirs and "test" in split_dirs else None)
        return RawData(*train, *test, classes, *(val or (None, None)))
    classes = _classes(root)
    files = _files(root, classes) if classes else []
    if not files:
        raise DataNotFoundError(f"dataset.path={path}: holds no class folder with images ({', '.join(EXTENSIONS)}); "
                                "give a folder holding one folder per class, as torchvision's ImageFolder reads")
    x, y = _cached(root, files, resize, grayscale)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # a fixed test split, as digits
    n_test = round(test_split * len(y))
    return RawData(x[perm[n_test:]], y[perm[n_test:]], x[perm[:n_test]], y[perm[:n_test]], classes)
