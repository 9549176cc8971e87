"""`dlbench data [DATASET ...] [KEY=VALUE ...]`: make sure a dataset is on disk, installing Debian's
package of it when it is missing and this process may (root with apt-get), then say what it holds."""
import os
import shutil
import subprocess
import sys

from dlbench import schema
from dlbench.config import build, compose_or_explain, group_options
from dlbench.data import DataNotFoundError, Dataset
from dlbench.data.vision import DEBIAN_PACKAGES


USAGE = """usage: dlbench data [DATASET ...] [KEY=VALUE ...]

Make sure each dataset (default: fashion_mnist) is on disk and print its splits. Overrides apply to
every dataset named, as in `dlbench train`: dlbench data cifar10 dataset.root=/data dataset.val_split=0.2"""


def _build_or_install(name: str, overrides: list[str]) -> Dataset:
    cfg = compose_or_explain([f"dataset={name}", *overrides])
    schema.check(cfg)
    try:
        return build(cfg.dataset)
    except DataNotFoundError as err:
        package = DEBIAN_PACKAGES.get(name)
        if not (package and shutil.which("apt-get") and os.geteuid() == 0):
            sys.exit(f"dlbench: {err}")
        print(f"{name}: not on disk; installing Debian's {package}", flush=True)
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", package], check=True)
        return build(cfg.dataset)


def describe(name: str, data: Dataset) -> str:
    splits = ", ".join(f"{len(s):,} {k}" for k, s in
                       {"train": data.train, "val": data.val, "test": data.test}.items() if s is not None)
    outputs = f"{data.num_classes} classes" if len(data.classes) else f"{data.num_classes} regression target"
    return f"{name}: {splits} examples of shape {tuple(data.in_shape)}, {outputs}"


def main(args: list[str]) -> int:
    if {"-h", "--help"} & set(args):
        print(USAGE)
        return 0
    overrides = [a for a in args if "=" in a]
    for name in [a for a in args if "=" not in a] or ["fashion_mnist"]:
        if name not in group_options("dataset"):
            sys.exit(f"dlbench: unknown dataset {name!r}; valid: {' '.join(group_options('dataset'))}")
        print(describe(name, _build_or_install(name, overrides)))
    return 0
