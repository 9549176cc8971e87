"""GoogLeNet (Szegedy et al. 2014) as the textbook trains it on 96x96 Fashion-MNIST: nine Inception
blocks in five stages, global average pooling, one linear layer."""
import torch
from torch import nn

from dlbench.models.registry import register_model


class Inception(nn.Module):
    """Four parallel paths concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max-pool -> 1x1.
    The 1x1 convolutions in front cut the channels the wide kernels see."""

    def __init__(self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.p1 = nn.Sequential(nn.Conv2d(in_channels, c1, 1), relu())
        self.p2 = nn.Sequential(nn.Conv2d(in_channels, c2[0], 1), relu(), nn.Conv2d(c2[0], c2[1], 3, padding=1), relu())
        self.p3 = nn.Sequential(nn.Conv2d(in_channels, c3[0], 1), relu(), nn.Conv2d(c3[0], c3[1], 5, padding=2), relu())
        self.p4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, c4, 1), relu())
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.p1(x), self.p2(x), self.p3(x), self.p4(x)], dim=1)  # (B, out_channels, H, W)


# (c1, (c2 reduce, c2), (c3 reduce, c3), c4) of each Inception block, per stage; "pool" ends a stage
STAGES = (
    ((64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64), "pool"),
    ((192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64), (128, (128, 256), (24, 64), 64),
     (112, (144, 288), (32, 64), 64), (256, (160, 320), (32, 128), 128), "pool"),
    ((256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128)),
)


def _scaled(spec, width: float):
    return tuple(_scaled(s, width) if isinstance(s, tuple) else max(1, round(s * width)) for s in spec)


@register_model
def googlenet(in_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    w = lambda c: max(1, round(c * width))  # noqa: E731
    layers: list[nn.Module] = [
        nn.Conv2d(in_shape[0], w(64), 7, stride=2, padding=3), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),  # 96 -> 48 -> 24
        nn.Conv2d(w(64), w(64), 1), nn.ReLU(inplace=True),
        nn.Conv2d(w(64), w(192), 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1)]  # -> 12
    c = w(192)
    for stage in STAGES:
        for spec in stage:
            if spec == "pool":
                layers.append(nn.MaxPool2d(3, stride=2, padding=1))  # 12 -> 6 -> 3
                continue
            block = Inception(c, *_scaled(spec, width))
            layers.append(block)
            c = block.out_channels
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
