"""Weight initialisation applied after any registered model is built (`model.init`).

Weights are the parameters with two or more dimensions (linear, conv and recurrent matrices);
biases are set to zero. Normalisation layers keep their ones and zeros. `default` keeps torch's.
"""
import math

import torch
from torch import nn


def lecun_uniform_(w: torch.Tensor) -> torch.Tensor:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the "standard" initialisation in Glorot & Bengio (2010)."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(w)
    bound = 1 / math.sqrt(fan_in)
    return nn.init.uniform_(w, -bound, bound)


INITS = {
    "xavier_uniform": nn.init.xavier_uniform_,       # U(+-sqrt(6 / (fan_in + fan_out)))
    "xavier_normal": nn.init.xavier_normal_,         # N(0, 2 / (fan_in + fan_out))
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),  # U(+-sqrt(6 / fan_in))
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),    # N(0, 2 / fan_in)
    "lecun_uniform": lecun_uniform_,
}


@torch.no_grad()
def initialise(model: nn.Module, init: str = "default", std: float = 0.01) -> nn.Module:
    if init == "default":
        return model
    if init == "normal":
        fill = lambda w: nn.init.normal_(w, 0.0, std)  # noqa: E731
    elif init in INITS:
        fill = INITS[init]
    else:
        raise ValueError(f"unknown init {init!r}; valid: default, normal, {', '.join(INITS)}")
    norm_layers = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    for module in model.modules():
        if isinstance(module, norm_layers):
            continue
        for name, param in module.named_parameters(recurse=False):
            if param.dim() >= 2:
                fill(param)
            elif name.startswith("bias"):
                nn.init.zeros_(param)
    return model
