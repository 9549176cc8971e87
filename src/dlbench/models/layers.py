"""Small pieces the model families share."""
from torch import nn

from dlbench import choices

ACTIVATIONS = choices.implement(choices.ACTIVATIONS, {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU})


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def dense_stack(in_features: int, hidden: list[int], num_classes: int, act: str, batchnorm: bool,
                dropout: float, dropout_first: bool = False) -> list[nn.Module]:
    """Linear layers in -> hidden... -> classes; dropout after each hidden activation
    (and, with dropout_first, on the input features too, as CNN heads do)."""
    layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout_first and dropout > 0 else []
    width = in_features
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if batchnorm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return layers


def flat_features(features: nn.Module, in_shape: tuple[int, ...], model: str) -> int:
    """Width of the flattened feature map for one input of in_shape, found by running a zero image
    through `features` (cheaper to keep right than the size arithmetic of every stem and pool)."""
    import torch

    try:
        with torch.no_grad():
            return features.eval()(torch.zeros(1, *in_shape)).flatten(1).shape[1]
    except RuntimeError as err:  # a kernel larger than what is left of the image
        raise ValueError(f"{model} cannot take a {'x'.join(map(str, in_shape))} input ({str(err).splitlines()[0]});"
                         " resize it (dataset.resize=...) or pick the model made for that size") from None
    finally:
        features.train()
