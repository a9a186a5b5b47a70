"""The OE paper's noise OOD sets (Gaussian, Rademacher, Blobs) as seeded uint8 images."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from .errors import ConfigError
from .specs import NOISE_SETS


def noise_images(kind: str, n: int, seed: int) -> Tensor:
    """The OE paper's noise OOD sets, mapped from its [-1, 1] arrays to pixels (uint8).

    gaussian: clip(N(0, 0.5^2), -1, 1); rademacher: +-1 with probability 1/2; blobs: Bernoulli(0.7)
    pixels blurred with a Gaussian of sigma 1.5 and thresholded at 0.75. OE feeds the [-1, 1]
    arrays to the network unnormalised; here they become images (v + 1) / 2 and are normalised
    like every other set.
    """
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        v = np.clip(rng.normal(0.0, 0.5, (n, 3, 32, 32)), -1, 1)
        pixels = (v + 1) / 2
    elif kind == "rademacher":
        pixels = rng.binomial(1, 0.5, (n, 3, 32, 32)).astype(np.float64)
    elif kind == "blobs":
        from scipy.ndimage import gaussian_filter

        raw = rng.binomial(1, 0.7, (n, 32, 32, 3)).astype(np.float64)
        blurred = gaussian_filter(raw, sigma=(0, 1.5, 1.5, 0), mode="nearest")
        blurred[blurred < 0.75] = 0.0
        pixels = blurred.transpose(0, 3, 1, 2)
    else:
        raise ConfigError(f"unknown noise set {kind!r}; choose one of {NOISE_SETS}")
    return torch.from_numpy(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8))
