import math

from torch import nn

from dlbench import choices
from dlbench.models.registry import register_model
from dlbench.models.layers import activation as make_activation
from dlbench.models.layers import dense_stack

# none: no pooling, the size is kept
POOLS = choices.implement(choices.POOLS, {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, "none": None})


@register_model
def cnn(in_shape: tuple[int, ...], num_classes: int, channels: list[int] = (32, 64),
        kernel_size: int = 3, pool: str = "max", hidden: list[int] = (128,), activation: str = "relu",
        batchnorm: bool = False, dropout: float = 0.0) -> nn.Module:
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; valid: {', '.join(POOLS)}")
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for out in channels:
        layers.append(nn.Conv2d(c, out, kernel_size, padding=kernel_size // 2, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(make_activation(activation))
        if POOLS[pool] is not None:
            layers.append(POOLS[pool](2))
            h, w = h // 2, w // 2
        c = out
    if h == 0 or w == 0:
        raise ValueError(f"{len(channels)} pooling blocks shrink a {in_shape[1]}x{in_shape[2]} input"
                         " to nothing; use fewer channels entries")
    layers.append(nn.Flatten())  # (B, c, h, w) -> (B, c*h*w)
    layers += dense_stack(math.prod((c, h, w)), list(hidden), num_classes, activation, batchnorm,
                          dropout, dropout_first=True)
    return nn.Sequential(*layers)
