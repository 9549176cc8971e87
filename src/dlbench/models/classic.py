"""The classic convolutional nets as the textbooks build them: LeNet-5, AlexNet (three sizes), VGG."""
from torch import nn

from dlbench.models.registry import register_model
from dlbench.models.layers import flat_features


def _head(in_features: int, hidden: list[int], num_classes: int, dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        in_features = width
    return [*layers, nn.Linear(in_features, num_classes)]


@register_model
def lenet(in_shape: tuple[int, ...], num_classes: int, channels: list[int] = (6, 16),
          hidden: list[int] = (120, 84)) -> nn.Module:
    # LeCun et al. 1998 as d2l builds it: sigmoid and average pooling, padding 2 so a 28x28 input
    # plays the role of the paper's 32x32
    c1, c2 = channels
    features = nn.Sequential(
        nn.Conv2d(in_shape[0], c1, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Conv2d(c1, c2, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten())
    width, layers = flat_features(features, in_shape, "lenet"), []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Sigmoid()]
        width = h
    return nn.Sequential(*features, *layers, nn.Linear(width, num_classes))


def _alexnet(in_shape, num_classes, channels, hidden, dropout, stem: dict, pool: dict, name: str) -> nn.Module:
    c1, c2, c3, c4, c5 = channels
    features = nn.Sequential(
        nn.Conv2d(in_shape[0], c1, **stem), nn.ReLU(inplace=True), nn.MaxPool2d(**pool),
        nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(**pool),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(**pool), nn.Flatten())
    return nn.Sequential(*features, *_head(flat_features(features, in_shape, name), list(hidden), num_classes,
                                           dropout))


IMAGENET_STEM = {"kernel_size": 11, "stride": 4, "padding": 1}  # 224 -> 54
IMAGENET_POOL = {"kernel_size": 3, "stride": 2}                  # overlapping pooling: 54 -> 26 -> 12 -> 5


@register_model
def alexnet(in_shape: tuple[int, ...], num_classes: int, channels: list[int] = (96, 256, 384, 384, 256),
            hidden: list[int] = (4096, 4096), dropout: float = 0.5) -> nn.Module:
    return _alexnet(in_shape, num_classes, channels, hidden, dropout, IMAGENET_STEM, IMAGENET_POOL, "alexnet")


@register_model
def alexnet_small(in_shape: tuple[int, ...], num_classes: int, channels: list[int] = (48, 128, 192, 192, 128),
                  hidden: list[int] = (1024, 1024), dropout: float = 0.5) -> nn.Module:
    return _alexnet(in_shape, num_classes, channels, hidden, dropout, IMAGENET_STEM, IMAGENET_POOL,
                    "alexnet_small")


@register_model
def alexnet28(in_shape: tuple[int, ...], num_classes: int, channels: list[int] = (48, 128, 192, 192, 128),
              hidden: list[int] = (1024, 1024), dropout: float = 0.5) -> nn.Module:
    # a 28x28 image cannot afford the 11x11/4 stem: 3x3 stride 1 and 2x2 pooling keep 28 -> 14 -> 7 -> 3
    return _alexnet(in_shape, num_classes, channels, hidden, dropout,
                    {"kernel_size": 3, "stride": 1, "padding": 1}, {"kernel_size": 2, "stride": 2}, "alexnet28")


@register_model
def vgg(in_shape: tuple[int, ...], num_classes: int,
        blocks: list[list[int]] = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)), width: float = 1.0,
        hidden: list[int] = (4096, 4096), dropout: float = 0.5) -> nn.Module:
    layers: list[nn.Module] = []
    c = in_shape[0]
    for convs, channels in blocks:  # each block: `convs` 3x3 convolutions, then halve H and W
        out = max(1, round(channels * width))
        for _ in range(convs):
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(inplace=True)]
            c = out
        layers.append(nn.MaxPool2d(2, 2))
    features = nn.Sequential(*layers, nn.Flatten())
    return nn.Sequential(*features, *_head(flat_features(features, in_shape, "vgg"), list(hidden), num_classes,
                                           dropout))
