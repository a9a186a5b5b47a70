"""Input normalisation belongs to the model: the (mean, std) its weights were trained with.

mimlib keeps images as uint8 and normalises them right before the network, in every loop
(training, feature extraction, ODIN's perturbation, post-mix augmentation). Each loop asks the
model which statistics it expects (:func:`input_normalization`), so a classifier trained on
ImageNet's statistics is never fed CIFAR-normalised inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError

ATTRIBUTE = "input_normalization"


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std of [0, 1] pixel intensities, as torchvision's Normalize."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError(f"a normalisation needs 3 means and 3 stds (RGB), got "
                              f"{self.mean} / {self.std}")
        if not all(s > 0 for s in self.std):
            raise ConfigError(f"normalisation stds must be > 0, got {self.std}")
        if not all(math.isfinite(v) for v in self.mean + self.std):
            raise ConfigError(f"a normalisation needs finite means and stds, got {self.mean} / "
                              f"{self.std}; give the statistics of the model's training images")

    def _view(self, values: Sequence[float], like: Tensor) -> Tensor:
        return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)

    def apply(self, images: Tensor) -> Tensor:
        """uint8 (or [0, 1] float) images to normalised float inputs, on the images' device."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return (x - self._view(self.mean, x)) / self._view(self.std, x)

    def invert(self, x: Tensor) -> Tensor:
        """Normalised inputs back to [0, 1] pixel intensities (not clamped)."""
        return x * self._view(self.std, x) + self._view(self.mean, x)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std)}


#: The paper's and the OE code's statistics (CIFAR-10 training set, rounded), for every set.
CIFAR = Normalization((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255),
                      "cifar (OE / paper)")
#: ImageNet's statistics, used by torchvision's and many CIFAR repositories' models.
IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagenet")
#: The DICE / ODIN DenseNet's CIFAR-10 statistics.
DICE_CIFAR10 = Normalization((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "dice cifar10")


def input_normalization(model: nn.Module) -> Normalization:
    """The statistics ``model`` expects: what :func:`set_normalization` attached, else the
    paper's CIFAR statistics (mimlib's default, the one every model had before)."""
    norm = getattr(model, ATTRIBUTE, None)
    return norm if isinstance(norm, Normalization) else CIFAR


def set_normalization(model: nn.Module, mean: Sequence[float] | Normalization,
                      std: Sequence[float] | None = None) -> nn.Module:
    """Say which input statistics ``model`` was trained with; returns the model.

    ``set_normalization(model, IMAGENET)`` or ``set_normalization(model, mean, std)``.
    Every mimlib loop then normalises its inputs with them.
    """
    if isinstance(mean, Normalization):
        norm = mean
    else:
        if std is None:
            raise ConfigError("set_normalization needs both mean and std (or a Normalization)")
        norm = Normalization(tuple(mean), tuple(std), "user")
    setattr(model, ATTRIBUTE, norm)
    return model
