import math

from torch import nn

from dlbench.models.registry import register_model
from dlbench.models.layers import dense_stack


@register_model
def mlp(in_shape: tuple[int, ...], num_classes: int, hidden: list[int] = (512, 512),
        activation: str = "relu", batchnorm: bool = False, dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(nn.Flatten(),  # (B, C, H, W) -> (B, C*H*W)
                         *dense_stack(math.prod(in_shape), list(hidden), num_classes, activation,
                                      batchnorm, dropout))


def mlp_params(width: int, depth: int, d_in: int, d_out: int) -> int:
    """Parameters of in -> depth hidden layers of `width` -> out (weights and biases)."""
    return width * (d_in + 1) + (depth - 1) * width * (width + 1) + d_out * (width + 1)


def width_for(params: int, depth: int, d_in: int, d_out: int) -> int:
    """The width whose MLP has the parameter count nearest `params`: the positive root of
    (depth-1) w^2 + (d_in + depth + d_out) w + d_out = params, rounded the better way."""
    a, b, c = depth - 1, d_in + depth + d_out, d_out - params
    root = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(sorted(candidates), key=lambda w: abs(mlp_params(w, depth, d_in, d_out) - params))


@register_model
def sized_mlp(in_shape: tuple[int, ...], num_classes: int, params: int = 1000, depth: int = 2,
              activation: str = "relu", batchnorm: bool = False, dropout: float = 0.0) -> nn.Module:
    """`depth` hidden layers of one width, chosen so the model has about `params` parameters:
    shallow vs deep at the same size is a sweep over depth."""
    if depth < 1:
        raise ValueError(f"sized_mlp needs depth >= 1 hidden layers; got {depth} (model=mlp model.hidden=[] is linear)")
    d_in = math.prod(in_shape)
    smallest = mlp_params(1, depth, d_in, num_classes)
    if params < smallest:
        raise ValueError(f"model.params={params} is below the smallest sized_mlp of depth {depth} "
                         f"(width 1: {smallest} parameters); raise params or lower depth")
    width = width_for(params, depth, d_in, num_classes)
    return mlp(in_shape, num_classes, [width] * depth, activation, batchnorm, dropout)
