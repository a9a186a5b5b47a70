"""Multi-input mixing: synthetic outliers as the average of k images of one batch."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .checks import choice, is_whole, positive
from .errors import ConfigError

WEIGHT_SCHEMES = ("equal", "dirichlet")


def check_k(k: object) -> int:
    """Return ``k`` if it is a whole number >= 1, else raise :class:`ConfigError`."""
    if not is_whole(k):
        raise ConfigError(
            f"k (the number of images per mix) must be a whole number >= 1, got {k!r}; "
            "k = 1 returns a permutation of the batch (no mixing), the paper uses k = 10 (CIFAR-10) and 5 (CIFAR-100)"
        )
    return k


def _check_batch(x: object) -> None:
    """Refuse what cannot be averaged: a non-tensor, an empty or integer (uint8) batch."""
    if not isinstance(x, Tensor):
        raise ConfigError(f"multi_input_mixup mixes a torch.Tensor batch, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] == 0 or not x.is_floating_point():
        raise ConfigError(f"multi_input_mixup needs a non-empty floating-point batch, got "
                          f"{x.dtype} of shape {tuple(x.shape)}; turn uint8 images into the "
                          "model's inputs first (mimlib.normalize)")


def mixing_indices(n: int, k: int, *, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> Tensor:
    """k independent random permutations of ``range(n)``, as a (k, n) index tensor.

    Column i holds the k batch members that make up mixed image i. Each row is a permutation,
    so one image can appear more than once in a column, exactly as in the authors' code.
    """
    check_k(k)
    # argsort of i.i.d. uniforms is a uniformly random permutation per row, in one kernel
    keys = torch.rand((k, n), generator=generator, device=_generator_device(generator, device))
    return keys.argsort(dim=1).to(device)


def multi_input_mixup(
    x: Tensor,
    k: int,
    *,
    weights: Literal["equal", "dirichlet"] = "equal",
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Make N synthetic images from a floating-point batch x of shape (N, ...) (dim 0 is the
    batch: normalised images, not uint8), each a weighted mean of k images.

    The k members of mix i are ``x[perm_j[i]]`` for k independent random permutations
    ``perm_j`` of the batch (the authors' scheme; repeats within a mix are possible).
    ``weights="equal"`` gives every member the weight 1/k (the paper); ``"dirichlet"`` draws one
    weight vector per mix from Dirichlet(alpha, ..., alpha), an ablation. ``k = 1`` returns a
    permutation of the batch. Vectorised: one gather and one weighted sum, on x's device;
    ``generator`` makes the draw reproducible (it must live on x's device or the CPU).
    """
    check_k(k)
    choice(weights, "weights", WEIGHT_SCHEMES)
    positive(alpha, "alpha (Dirichlet concentration)")  # inf made all-NaN weights
    _check_batch(x)
    n = x.shape[0]
    index = mixing_indices(n, k, generator=generator, device=x.device)  # (k, n)
    members = x[index.reshape(-1)].reshape(k, n, *x.shape[1:])  # (k, n, ...)
    if weights == "equal":
        return members.mean(dim=0)
    w = dirichlet_weights(n, k, alpha, generator=generator, device=x.device).to(x.dtype)
    w = w.T.reshape(k, n, *([1] * (x.ndim - 1)))
    return (w * members).sum(dim=0)


def dirichlet_weights(n: int, k: int, alpha: float, *, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> Tensor:
    """n weight vectors of length k from a symmetric Dirichlet(alpha), shape (n, k), float32.

    ``torch.distributions`` ignores generators, so the draw is made by NumPy from a seed that
    the torch generator supplies: the same generator state gives the same weights.
    """
    seed = int(torch.randint(2**62, (1,), generator=generator,
                             device=_generator_device(generator, device)).item())
    w = np.random.default_rng(seed).dirichlet(np.full(k, float(alpha)), size=n)
    return torch.from_numpy(w.astype(np.float32)).to(device)


def _generator_device(generator: torch.Generator | None,
                      device: torch.device | str | None) -> torch.device:
    """Where random numbers must be drawn: on the generator's device when one is given."""
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")
