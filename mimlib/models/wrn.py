"""Wide ResNet (Zagoruyko & Komodakis), the paper's WRN-40-2 with the OE code's parameter names."""

from __future__ import annotations

import math

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .classes import check_classes


class _WRNBlock(nn.Module):
    """Pre-activation basic block of the Wide ResNet, with the parameter names of the OE code."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.droprate = drop_rate
        self.equalInOut = in_planes == out_planes
        self.convShortcut = (None if self.equalInOut
                             else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        out = self.conv2(out)
        shortcut = x if self.equalInOut else self.convShortcut(act)
        return shortcut + out


class _WRNStage(nn.Module):
    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int,
                 drop_rate: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[
            _WRNBlock(in_planes if i == 0 else out_planes, out_planes,
                      stride if i == 0 else 1, drop_rate) for i in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """Wide ResNet for 32x32 inputs whose state dict matches the OE / pytorch-ood checkpoints."""

    def __init__(self, num_classes: int, depth: int = 40, widen_factor: int = 2,
                 drop_rate: float = 0.3) -> None:
        check_classes(num_classes)
        super().__init__()
        if (depth - 4) % 6:
            raise ConfigError(f"WideResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.block1 = _WRNStage(n, widths[0], widths[1], 1, drop_rate)
        self.block2 = _WRNStage(n, widths[1], widths[2], 2, drop_rate)
        self.block3 = _WRNStage(n, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(widths[3], num_classes)
        self.feature_dim = widths[3]
        for m in self.modules():  # the initialisation of the OE code
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (N, 128 * widen_factor / 2) after global average pooling."""
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        return out.mean(dim=(2, 3))  # global average pooling, deterministic on CUDA

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def wrn40_2(num_classes: int) -> WideResNet:
    """WRN-40-2 with dropout 0.3, the architecture of the paper and of the OE checkpoints."""
    return WideResNet(num_classes, depth=40, widen_factor=2, drop_rate=0.3)


