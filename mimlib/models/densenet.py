"""DenseNet-BC for 32x32 images with the parameter names of the ODIN / DICE ``DenseNet3``."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .classes import check_classes


class _Bottleneck(nn.Module):
    def __init__(self, in_planes: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth, 1, 1, 0, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class _Transition(nn.Module):
    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 1, 1, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv1(F.relu(self.bn1(x))), 2)


class _DenseBlock(nn.Module):
    def __init__(self, n: int, in_planes: int, growth: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[_Bottleneck(in_planes + i * growth, growth) for i in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class DenseNet(nn.Module):
    """DenseNet-BC (bottleneck, compression 0.5) of depth 3 * 2n + 4; BC-100 has n = 16."""

    def __init__(self, num_classes: int, depth: int = 100, growth: int = 12,
                 reduction: float = 0.5) -> None:
        check_classes(num_classes)
        super().__init__()
        if (depth - 4) % 6:
            raise ConfigError(f"DenseNet-BC depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        planes = 2 * growth
        self.conv1 = nn.Conv2d(3, planes, 3, 1, 1, bias=False)
        self.block1 = _DenseBlock(n, planes, growth)
        planes += n * growth
        self.trans1 = _Transition(planes, int(math.floor(planes * reduction)))
        planes = int(math.floor(planes * reduction))
        self.block2 = _DenseBlock(n, planes, growth)
        planes += n * growth
        self.trans2 = _Transition(planes, int(math.floor(planes * reduction)))
        planes = int(math.floor(planes * reduction))
        self.block3 = _DenseBlock(n, planes, growth)
        planes += n * growth
        self.bn1 = nn.BatchNorm2d(planes)
        self.fc = nn.Linear(planes, num_classes)
        self.feature_dim = planes

    def features(self, x: Tensor) -> Tensor:
        out = self.trans1(self.block1(self.conv1(x)))
        out = self.block3(self.trans2(self.block2(out)))
        return F.relu(self.bn1(out)).mean(dim=(2, 3))  # the 8x8 average pooling of DenseNet3

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))
