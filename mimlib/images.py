"""A set of 32x32 images as uint8 tensors with labels, the paper's input normalisation, and batching: what every loader returns and every loop reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterator, Sequence
import torch
from torch import Tensor
from .checks import whole
from .errors import ConfigError, DataError
from .models.normalization import CIFAR, Normalization


#: Normalisation of the paper and the OE code (mimlib.models.CIFAR): (mean, std) per channel.
CIFAR_MEAN, CIFAR_STD = CIFAR.mean, CIFAR.std


@dataclass
class ImageSet:
    """A named set of 32x32 RGB images as uint8 (N, 3, 32, 32) with int64 labels (-1 = OOD)."""

    name: str
    images: Tensor
    labels: Tensor
    classes: tuple[str, ...] = ()
    source: str = ""
    _sha256: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise DataError(f"{self.name}: images must be uint8 (N, 3, H, W), got "
                            f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise DataError(f"{self.name}: labels must be int64 (N,), got {self.labels.dtype} "
                            f"{tuple(self.labels.shape)}")
        if len(self.labels) != len(self.images):
            raise DataError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if len(self.images) == 0:
            raise DataError(f"{self.name} holds no images; check its source ({self.source})")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sha256(self) -> str:
        """Checksum of the pixels and labels: names the exact data a stored result came from."""
        if self._sha256 is None:
            h = hashlib.sha256()
            h.update(self.images.contiguous().numpy().tobytes())
            h.update(self.labels.contiguous().numpy().tobytes())
            self._sha256 = h.hexdigest()
        return self._sha256

    def subset(self, limit: int | None, seed: int = 0) -> "ImageSet":
        """At most ``limit`` samples, drawn without replacement by a seeded permutation."""
        if limit is None:
            return self
        whole(limit, "a subset limit")
        if limit >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(self), generator=g)[:limit].sort().values
        return ImageSet(self.name, self.images[keep], self.labels[keep], self.classes,
                        f"{self.source} (subset of {limit}, seed {seed})")


def normalize(images: Tensor, mean: Sequence[float] = CIFAR_MEAN,
              std: Sequence[float] = CIFAR_STD) -> Tensor:
    """uint8 (or [0, 1] float) images to normalised float inputs, on the images' device."""
    if not (isinstance(images, Tensor) and images.ndim == 4 and images.shape[1] == 3
            and (images.dtype == torch.uint8 or images.is_floating_point())):
        given = (f"{images.dtype} of shape {tuple(images.shape)}" if isinstance(images, Tensor)
                 else type(images).__name__)
        raise ConfigError(f"normalize takes uint8 or [0, 1] float images (N, 3, H, W), got "
                          f"{given}; add the batch dimension to one image (images[None])")
    return Normalization(tuple(mean), tuple(std)).apply(images)


def denormalize(x: Tensor, mean: Sequence[float] = CIFAR_MEAN,
                std: Sequence[float] = CIFAR_STD) -> Tensor:
    """Normalised inputs back to [0, 1] pixel intensities (not clamped)."""
    return Normalization(tuple(mean), tuple(std)).invert(x)


def iter_batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering range(n)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
