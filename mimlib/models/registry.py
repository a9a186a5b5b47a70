"""The architectures mimlib builds, and a registry of published weights for them.

Each published entry carries what a strict, verified load needs and what a user must know to
use the weights: the architecture, the download URL pinned to a commit, the full SHA-256, the
licence, the source, the top-1 accuracy its authors report, and the input normalisation the
weights were trained with (timm's idea of a pretrained configuration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor, nn

from ..errors import ConfigError
from ..specs import BaseSpec
from .classes import check_classes
from .densenet import DenseNet
from .normalization import CIFAR, DICE_CIFAR10, IMAGENET, Normalization
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
    """A published checkpoint: where to get it, how to check it, what it expects, and what it
    is (the data it was trained on, how, and whether the paper starts from it)."""

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
    id_data: str = "cifar10"  # the ID data set it was trained on
    training: str = "cross-entropy"  # or "oe": fine-tuned with Outlier Exposure by its authors
    paper_base: bool = False  # the paper's starting point for its ID data (base: published)
    #: what makes the file's state dict fit mimlib's architecture (None: nothing)
    transform: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None


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
#: The OE authors' WRN-40-2 (pytorch-ood 0.4's keys and files, which its downloads share): the
#: cross-entropy baselines are the paper's starting points ("cifar10-pt" in pytorch-ood 0.1.6),
#: the OE-tuned ones the OE paper's own results.
_WRN = {("cifar10", "cross-entropy"): (
            "https://github.com/wetliu/energy_ood/raw/master/CIFAR/snapshots/pretrained/"
            "cifar10_wrn_pretrained_epoch_99.pt",
            "0b59e178577382a0cf5d1e079d1d019f6a33b0801b7d123a59e51b4b32972637"),
        ("cifar100", "cross-entropy"): (
            "https://github.com/wetliu/energy_ood/raw/master/CIFAR/snapshots/pretrained/"
            "cifar100_wrn_pretrained_epoch_99.pt",
            "3751f516b81ef9d27290f08a3de78d65a3771f477bd6a6caefa81b330dc34baf"),
        ("cifar10", "oe"): (
            "https://github.com/hendrycks/outlier-exposure/raw/master/CIFAR/snapshots/oe_tune/"
            "cifar10_wrn_oe_tune_epoch_9.pt",
            "b473f1c463c9fe16057647746907b68b6ade615f93ac4bdf005263ed69d542d0"),
        ("cifar100", "oe"): (
            "https://github.com/hendrycks/outlier-exposure/raw/master/CIFAR/snapshots/oe_tune/"
            "cifar100_wrn_oe_tune_epoch_9.pt",
            "1d4dd53f7605d66f64bcdf146ed9327ecbebbd5da42a9f7d70b9d6a28ee9bb51")}


def _wrn_weights(id_data: str, training: str, url: str, sha256: str) -> PublishedWeights:
    loss = "crossentropy" if training == "cross-entropy" else training
    key = f"wrn-40-2/{id_data}/{loss}"
    return PublishedWeights(
        key, "wrn40_2", 100 if id_data == "cifar100" else 10,
        f"{key.replace('/', '-')}-{sha256[:16]}.pt", url, sha256, CIFAR,
        "as its authors' repository states (pytorch-ood's registry names none)",
        f"pytorch-ood 0.4's registry: {'/'.join(url.split('/')[3:5])} (Hendrycks et al.'s WRN-40-2, "
        f"{'baseline' if training == 'cross-entropy' else 'OE-tuned'})",
        display=f"{key} (pytorch-ood, published)", id_data=id_data, training=training,
        paper_base=training == "cross-entropy")


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
    **{w.key: w for w in (_wrn_weights(data, training, url, digest)
                          for (data, training), (url, digest) in _WRN.items())},
}


def published_weights(key: str) -> PublishedWeights:
    """The registry entry for ``key`` (e.g. ``resnet20/cifar10``), or an error listing them."""
    if key not in PUBLISHED:
        raise ConfigError(f"unknown published weights {key!r}; mimlib's registry has "
                          f"{sorted(PUBLISHED)} (other keys of pytorch-ood's registry, such as "
                          "'wrn-40-2/svhn/crossentropy', work too)")
    return PUBLISHED[key]


def paper_weights(id_data: str) -> PublishedWeights | None:
    """The paper's starting point for an ID data set (``base: published``), where there is one."""
    return next((w for w in PUBLISHED.values() if w.paper_base and w.id_data == id_data), None)


def published_oe_weights(id_data: str, arch: str) -> PublishedWeights | None:
    """The OE authors' own OE-tuned weights for an ID set and architecture, where they exist."""
    return next((w for w in PUBLISHED.values()
                 if w.training == "oe" and w.id_data == id_data and w.arch == arch), None)


def architecture_display(arch: str) -> str:
    """The readers' name of an architecture (its key when it has none)."""
    return ARCHITECTURE_NAMES.get(arch, arch)


def weights_display(base: str | BaseSpec) -> str:
    """The readers' name of a starting point (:class:`mimlib.companion.results.setup.Setup`'s ``base``):
    trained here, the paper's published WRN-40-2, a registry entry, or a checkpoint file; text
    that is no base comes back as it is."""
    spec = BaseSpec.find(base)
    if spec is None:
        return str(base)
    if spec.kind == "pretrain":
        return "trained here"
    if spec.kind == "published":
        return "published WRN-40-2 (the paper's, pytorch-ood)"
    if spec.kind == "registry":
        entry = PUBLISHED.get(spec.value)
        return entry.display if entry and entry.display else f"{spec.value} (pytorch-ood, published)"
    return f"checkpoint {spec.value.rstrip('/').rsplit('/', 1)[-1]}"
