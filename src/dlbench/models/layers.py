"""Small pieces the model families share."""
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
               "gelu": nn.GELU}


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
