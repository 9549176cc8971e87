import math

from torch import nn

from dlbench.models import register_model
from dlbench.models.layers import dense_stack


@register_model
def mlp(in_shape: tuple[int, ...], num_classes: int, hidden: list[int] = (512, 512),
        activation: str = "relu", batchnorm: bool = False, dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(nn.Flatten(),  # (B, C, H, W) -> (B, C*H*W)
                         *dense_stack(math.prod(in_shape), list(hidden), num_classes, activation,
                                      batchnorm, dropout))
