"""Classifiers for 32x32 images, and how mimlib reads any classifier's penultimate features.

Every model here has ``features(x) -> (N, D)``, a linear head ``fc`` and ``forward(x) =
fc(features(x))``. Evaluation needs only the head: :func:`features_and_logits` runs a model once
and takes the features at its head's input, so other classifiers (torchvision's ResNets, VGG,
EfficientNet...) work too.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError


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
    return WideResNet(_check_classes(num_classes), depth=40, widen_factor=2, drop_rate=0.3)


class _ResBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18, CIFAR variant: 3x3 stem with stride 1 and no max-pooling (512-d features)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(_ResBlock(in_planes, planes, stride),
                                        _ResBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, num_classes)
        self.feature_dim = 512

    def features(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return out.mean(dim=(2, 3))  # global average pooling, deterministic on CUDA

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


class SmallCNN(nn.Module):
    """A four-layer CNN (61 k parameters at width 16) that trains on a 2-core CPU in minutes."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True))

        w = width
        self.body = nn.Sequential(stage(3, w), nn.MaxPool2d(2), stage(w, 2 * w), nn.MaxPool2d(2),
                                  stage(2 * w, 4 * w), nn.MaxPool2d(2), stage(4 * w, 4 * w))
        self.fc = nn.Linear(4 * w, num_classes)
        self.feature_dim = 4 * w

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "wrn40_2": wrn40_2,
    "resnet18": lambda c: ResNet18(_check_classes(c)),
    "small_cnn": lambda c: SmallCNN(_check_classes(c)),
}


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised model of a registered architecture (see ``ARCHITECTURES``)."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_classes)


def _check_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be a whole number >= 2, got {num_classes!r}")
    return num_classes


#: Where classifiers keep their last linear layer: mimlib's and torchvision's models,
#: and the CIFAR ResNets of kuangliu/pytorch-cifar (``linear``) that much OOD work starts from.
HEAD_NAMES = ("fc", "classifier", "head", "linear")


def find_linear_head(model: nn.Module) -> nn.Linear | None:
    """The classifier's last linear layer: an attribute named as in ``HEAD_NAMES``, or the last
    module of such an ``nn.Sequential``; None when there is none."""
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Sequential) and len(head):
            head = head[-1]
        if isinstance(head, nn.Linear):
            return head
    return None


def linear_head(model: nn.Module) -> nn.Linear:
    """:func:`find_linear_head`, or an error that says how to make the model usable."""
    head = find_linear_head(model)
    if head is None:
        raise ConfigError(
            f"{type(model).__name__} has no linear head: the detectors read the penultimate "
            f"features at the input of the last nn.Linear, looked up as an attribute named "
            f"{' / '.join(HEAD_NAMES)} (or the last layer of such an nn.Sequential). Name your "
            "last layer fc, or wrap the model in a module whose forward is fc(features(x)).")
    return head


def features_and_logits(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Penultimate features (N, D), the linear head's input, and logits from one forward pass."""
    captured: list[Tensor] = []
    hook = linear_head(model).register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    try:
        logits = model(x)
    finally:
        hook.remove()
    if len(captured) != 1:
        raise ConfigError(f"the linear head of {type(model).__name__} ran {len(captured)} times "
                          "in one forward pass; expected once (features cannot be read)")
    return torch.flatten(captured[0], 1), logits
