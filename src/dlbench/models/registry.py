"""One registry of model builders: `@register_model` a function, `create_model(name, **cfg)` it.
Model files import this leaf module; dlbench.models imports every model file, so the registry is full.

A builder takes the data's `in_shape` (C, H, W) and `num_classes`, then its own config keys.
"""
from collections.abc import Callable

from torch import nn

from dlbench.models.init import initialise

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    MODELS[fn.__name__] = fn
    return fn


def create_model(name: str, init: str = "default", init_std: float = 0.01, **kwargs) -> nn.Module:
    """Build model `name` from its config keys, then initialise its weights (`init`, see init.py)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    return initialise(MODELS[name](**kwargs), init, init_std)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
