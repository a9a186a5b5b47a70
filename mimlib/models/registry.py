"""The architectures mimlib builds, and a registry of published weights for them.

Each published entry carries what a strict, verified load needs and what a user must know to
use the weights: the architecture, the download URL pinned to a commit, the full SHA-256, the
licence, the source, the top-1 accuracy its authors report, and the input normalisation the
weights were trained with (timm's idea of a pretrained configuration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import ConfigError
from .classes import check_classes
from .densenet import DenseNet
from .normalization import DICE_CIFAR10, IMAGENET, Normalization
from .resnet import CifarResNet, ResNet18
from .small_cnn import SmallCNN
from .wrn import wrn40_2

ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "wrn40_2": wrn40_2,
    "resnet18": lambda c: ResNet18(check_classes(c)),
    "small_cnn": lambda c: SmallCNN(check_classes(c)),
    **{f"resnet{d}": (lambda d: lambda c: CifarResNet(check_classes(c), d))(d)
       for d in (20, 32, 44, 56)},
    "densenet100": lambda c: DenseNet(check_classes(c), depth=100, growth=12),
}

#: What figures and tables call each architecture (the key stays in the provenance line).
ARCHITECTURE_NAMES: dict[str, str] = {
    "wrn40_2": "WRN-40-2",
    "resnet18": "ResNet-18",
    "small_cnn": "small CNN",
    **{f"resnet{d}": f"ResNet-{d}" for d in (20, 32, 44, 56)},
    "densenet100": "DenseNet-BC-100",
}


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised model of a registered architecture (see ``ARCHITECTURES``)."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_classes)


@dataclass(frozen=True)
class PublishedWeights:
    """A published checkpoint: where to get it, how to check it, what it expects."""

    key: str
    arch: str
    num_classes: int
    file_name: str
    url: str
    sha256: str
    normalization: Normalization
    licence: str
    source: str
    reported_top1: float | None = None  # on the original (lossless) test set, per its authors
    display: str = ""  # what figures and tables call these weights (the key: provenance)


_AKAMASTER = ("https://github.com/akamaster/pytorch_resnet_cifar10/raw/"
              "d5489e8995e81e91ce6b1d69dcc98ad579b0b153/pretrained_models/")
_RESNETS = {20: ("resnet20-12fca82f.th",
                 "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8", 0.9178),
            32: ("resnet32-d509ac18.th",
                 "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850", 0.9278),
            44: ("resnet44-014dd654.th",
                 "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4", 0.9314),
            56: ("resnet56-4bfd9763.th",
                 "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367", 0.9362)}

PUBLISHED: dict[str, PublishedWeights] = {
    **{f"resnet{d}/cifar10": PublishedWeights(
        f"resnet{d}/cifar10", f"resnet{d}", 10, name, _AKAMASTER + name, digest, IMAGENET,
        "BSD-2-Clause (Yerlan Idelbayev)",
        "akamaster/pytorch_resnet_cifar10 at d5489e8 (He et al. 2016, option-A CIFAR ResNet)",
        top1, f"ResNet-{d}, CIFAR-10 (He et al., published)")
        for d, (name, digest, top1) in _RESNETS.items()},
    "densenet100/cifar10": PublishedWeights(
        "densenet100/cifar10", "densenet100", 10, "densenet100-dice-cifar10.pth.tar",
        "https://github.com/deeplearning-wisc/dice/raw/8acfb8d52eee997a7bf6f9d17ff5363fd91ba47b/"
        "checkpoints/CIFAR-10/densenet/checkpoint_100.pth.tar",
        "deaefd082911a1c6c92aacdcfecf03c71b932acc5c08b779c85c44eccdc0c817", DICE_CIFAR10, "MIT",
        "deeplearning-wisc/dice at 8acfb8d (the DICE paper's DenseNet-BC-100, growth 12)",
        display="DenseNet-BC-100, CIFAR-10 (DICE paper, published)"),
}


def published_weights(key: str) -> PublishedWeights:
    """The registry entry for ``key`` (e.g. ``resnet20/cifar10``), or an error listing them."""
    if key not in PUBLISHED:
        raise ConfigError(f"unknown published weights {key!r}; mimlib's registry has "
                          f"{sorted(PUBLISHED)} (pytorch-ood's keys, such as "
                          "'wrn-40-2/cifar10/crossentropy', work too)")
    return PUBLISHED[key]


def architecture_display(arch: str) -> str:
    """The readers' name of an architecture (its key when it has none)."""
    return ARCHITECTURE_NAMES.get(arch, arch)


def weights_display(base: str) -> str:
    """The readers' name of a starting point (:class:`mimlib.experiment.Setup`'s ``base``):
    trained here, the paper's published WRN-40-2, a registry entry, or a checkpoint file."""
    if base == "pretrain":
        return "trained here"
    if base == "published":
        return "published WRN-40-2 (the paper's, pytorch-ood)"
    if base.startswith("registry:"):
        key = base[len("registry:"):]
        entry = PUBLISHED.get(key)
        return entry.display if entry and entry.display else f"{key} (pytorch-ood, published)"
    if base.startswith("checkpoint:"):
        return f"checkpoint {base[len('checkpoint:'):].rstrip('/').rsplit('/', 1)[-1]}"
    return base
