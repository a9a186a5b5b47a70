"""The two protocols: ``faithful`` repeats the authors' code, ``corrected`` fixes its quirks.

Every difference between them is a line in :data:`QUIRKS` (what the authors' code does, what the
corrected protocol does instead, and which setting carries it), so the book can print the list
and each run can say which protocol produced it. A setting that changes what the method *is*
(batch-norm handling) is no quirk: both protocols keep the authors' choice, and the
alternatives are a sensitivity, listed in :data:`DESIGN_CHOICES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...detectors import DetectorOptions
from ...errors import ConfigError
from ...train_config import MIMConfig

PROTOCOLS = ("faithful", "corrected")
#: What figures and tables call each protocol.
PROTOCOL_NAMES = {"faithful": "faithful (authors' code)", "corrected": "corrected (quirks fixed)"}

#: k of the paper per ID set (CIFAR-10: 10, CIFAR-100: 5); other ID sets use 10.
PAPER_K = {"cifar10": 10, "cifar100": 5}


@dataclass(frozen=True)
class Quirk:
    """One place where the authors' code departs from the usual (or the paper's) protocol."""

    setting: str
    faithful: str
    corrected: str


QUIRKS = (
    Quirk("shuffle", "fine-tuning loader not shuffled (DataLoader default)",
          "a fresh random order every epoch"),
    Quirk("aug_p", "post-mix augmentation with probability 0.5 per image on CIFAR-10 (a Python "
          "coin flip), always on CIFAR-100", "always (probability 1), on every data set"),
    Quirk("aug_quantize", "augmentation through PIL: mixed images truncated to 8 bits, augmented, "
          "re-quantised", "augmentation on float tensors, no quantisation"),
    Quirk("fit_split", "every post-hoc detector fitted on the ID *test* set",
          "detectors fitted on the ID training set"),
    Quirk("features_as_logits", "CIFAR-100 only: Entropy and Energy built on model.features, so "
          "they score the 128-d penultimate features as if they were logits",
          "Entropy and Energy score the logits"),
    Quirk("mahalanobis_eps", "Mahalanobis of pytorch-ood 0.1.6, which perturbs each input "
          "(ODIN-style, eps 0.002) before measuring the distance",
          "Mahalanobis on the cached features, no input perturbation"),
    Quirk("seed", "only torch.manual_seed(1234); Python's random (the augmentation coin) unseeded",
          "every random draw comes from seeded generators"),
)


@dataclass(frozen=True)
class DesignChoice:
    """A setting that changes the method itself: the authors' value, which both protocols use,
    and the alternatives the book measures as a sensitivity."""

    setting: str
    authors: str
    alternatives: str
    why: str


DESIGN_CHOICES = (
    DesignChoice(
        "bn_mode", "frozen: the model stays in eval mode while fine-tuning (model.train() is "
        "never called), so batch norm keeps the pretrained running statistics",
        "id-stats: train mode, running statistics from the ID images only; mixed-stats: train "
        "mode on the concatenated ID and mixed batch, as Outlier Exposure fine-tunes",
        "the mixed images (means of k images, low contrast) replace the running statistics "
        "within tens of steps while the weights barely move: this decides what the method "
        "does, so it is an ablation, not a bug to correct"),
)


@dataclass(frozen=True)
class ProtocolSettings:
    """Everything a protocol decides for one ID data set."""

    name: str
    shuffle: bool
    bn_mode: str
    aug_p: float
    aug_quantize: bool
    fit_split: str
    detector_options: DetectorOptions

    def mim_overrides(self) -> dict[str, Any]:
        """The MIMConfig fields this protocol fixes."""
        return {"shuffle": self.shuffle, "bn_mode": self.bn_mode, "aug_p": self.aug_p,
                "aug_quantize": self.aug_quantize}


def check_protocol(name: object) -> str:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {list(PROTOCOLS)}")
    return str(name)


def protocol_settings(name: str, id_data: str) -> ProtocolSettings:
    """The settings of protocol ``name`` for the ID data set ``id_data``."""
    check_protocol(name)
    if name == "corrected":
        return ProtocolSettings(name, shuffle=True, bn_mode="frozen", aug_p=1.0, aug_quantize=False,
                                fit_split="train", detector_options=DetectorOptions())
    cifar100 = id_data == "cifar100"
    return ProtocolSettings(
        name, shuffle=False, bn_mode="frozen", aug_p=1.0 if cifar100 else 0.5, aug_quantize=True,
        fit_split="test",
        detector_options=DetectorOptions(
            mahalanobis_eps=0.002,
            features_as_logits=("Entropy", "Energy") if cifar100 else ()))


def paper_k(id_data: str) -> int:
    """The paper's number of mixed images per synthetic outlier for this ID set; other ID data
    get :class:`MIMConfig`'s default (the paper's CIFAR-10 value), the one other home of k."""
    return PAPER_K.get(id_data, MIMConfig.k)
