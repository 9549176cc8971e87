"""The dataset sources (raw files by name) and the shape of each dataset from its config alone."""
from collections.abc import Callable

from dlbench.config import build
from dlbench.data.base import DataShape, RawData

SOURCES: dict[str, Callable[..., RawData]] = {}
# the shape of a dataset from its config alone, without reading files (`dlbench info` uses it)
SHAPES: dict[str, Callable[..., DataShape]] = {}


def register_source(fn: Callable[..., RawData]) -> Callable[..., RawData]:
    if fn.__name__ in SOURCES:
        raise ValueError(f"dataset source {fn.__name__!r} is registered twice")
    SOURCES[fn.__name__] = fn
    return fn


def load_source(name: str, **kwargs) -> RawData:
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(SOURCES))}")
    return SOURCES[name](**kwargs)


def data_shape(node) -> DataShape:
    """From the table when the dataset is in it, else by building the dataset (slower, but right)."""
    if node.name in SHAPES:
        return SHAPES[node.name](node)
    data = build(node)
    splits = ("train", *data.eval_splits())
    return DataShape(tuple(data.in_shape), data.num_classes, data.task, splits)
