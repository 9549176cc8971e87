"""Weight initialisation applied after any registered model is built (`model.init`).

Weights are the parameters with two or more dimensions (linear, conv and recurrent matrices);
biases are set to zero. Normalisation layers keep their ones and zeros. `default` keeps torch's.
"""
import math

import torch
from torch import nn

from dlbench import choices


def lecun_uniform_(w: torch.Tensor) -> torch.Tensor:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the "standard" initialisation in Glorot & Bengio (2010)."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(w)
    bound = 1 / math.sqrt(fan_in)
    return nn.init.uniform_(w, -bound, bound)


# each fills a weight given the std that `normal` draws with; default (torch's own) is handled apart
INITS = choices.implement(choices.INITS, {
    "normal": lambda w, std: nn.init.normal_(w, 0.0, std),
    "xavier_uniform": lambda w, std: nn.init.xavier_uniform_(w),    # U(+-sqrt(6 / (fan_in + fan_out)))
    "xavier_normal": lambda w, std: nn.init.xavier_normal_(w),      # N(0, 2 / (fan_in + fan_out))
    "kaiming_uniform": lambda w, std: nn.init.kaiming_uniform_(w, nonlinearity="relu"),  # U(+-sqrt(6 / fan_in))
    "kaiming_normal": lambda w, std: nn.init.kaiming_normal_(w, nonlinearity="relu"),    # N(0, 2 / fan_in)
    "lecun_uniform": lambda w, std: lecun_uniform_(w),
}, extra=("default",))


@torch.no_grad()
def initialise(model: nn.Module, init: str = "default", std: float = 0.01) -> nn.Module:
    if init == "default":
        return model
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid: {', '.join(choices.INITS)}")
    norm_layers = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    for module in model.modules():
        if isinstance(module, norm_layers):
            continue
        for name, param in module.named_parameters(recurse=False):
            if param.dim() >= 2:
                INITS[init](param, std)
            elif name.startswith("bias"):
                nn.init.zeros_(param)
    return model
