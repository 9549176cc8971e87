"""ResNet-18 (He et al. 2015) as the textbook builds it: a stem, four stages of two residual
blocks with batch norm, global average pooling, one linear layer."""
import torch
from torch import nn
from torch.nn import functional as F

from dlbench import choices
from dlbench.models.registry import register_model


class Residual(nn.Module):
    """conv-bn-relu-conv-bn plus the input; a 1x1 convolution matches the shortcut when the block
    changes channels or strides."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == channels else
                         nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def imagenet_stem(in_channels: int, channels: int) -> list[nn.Module]:
    # 7x7/2 conv then 3x3/2 max-pool: a 96x96 input reaches the first stage at 24x24
    return [nn.Conv2d(in_channels, channels, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1)]


def small_stem(in_channels: int, channels: int) -> list[nn.Module]:
    # a 28x28 image has no resolution to spare: a 3x3/1 conv, no pooling (as CIFAR ResNets do)
    return [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True)]


STEMS = choices.implement(choices.STEMS, {"imagenet": imagenet_stem, "small": small_stem}, extra=("auto",))
SMALL_INPUT = 64  # stem=auto takes the small stem below this side length


@register_model
def resnet18(in_shape: tuple[int, ...], num_classes: int, stem: str = "auto",
             channels: list[int] = (64, 128, 256, 512), blocks_per_stage: int = 2) -> nn.Module:
    if stem == "auto":
        stem = "small" if min(in_shape[1:]) < SMALL_INPUT else "imagenet"
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; valid: auto, {', '.join(STEMS)}")
    layers = STEMS[stem](in_shape[0], channels[0])
    c = channels[0]
    for i, out in enumerate(channels):
        for j in range(blocks_per_stage):
            stride = 2 if i > 0 and j == 0 else 1  # every stage after the first halves H and W
            layers.append(Residual(c, out, stride))
            c = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
