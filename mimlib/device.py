"""Device choice, precision and determinism switches shared by training and evaluation."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np
import torch

from .errors import ConfigError, DeviceMemoryError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; anything else is checked."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA device is available; "
                          "use device='auto' or 'cpu'")
    return dev


def uses_fast_path(device: torch.device) -> bool:
    """Whether to run bf16 autocast and channels_last: on CUDA only (slower on the CPU)."""
    return device.type == "cuda"


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on the fast path, plain fp32 elsewhere."""
    if enabled and uses_fast_path(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


#: Precisions of the evaluation forward passes. fp32 (the default, as the authors ran) also turns
#: off TF32 on CUDA, so GPU scores are fp32 scores; bf16 is faster and moves AUROC by ~1e-4.
EVAL_PRECISIONS = ("fp32", "bf16")


@contextlib.contextmanager
def eval_precision(device: torch.device, precision: str = "fp32") -> Iterator[None]:
    """The evaluation forward passes in the given precision (on the CPU always fp32)."""
    if precision not in EVAL_PRECISIONS:
        raise ConfigError(f"eval_precision must be one of {EVAL_PRECISIONS}, got {precision!r}")
    if device.type != "cuda":
        yield
    elif precision == "bf16":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices): model initialisation and dropout use them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels on CUDA (slower); CPU runs with one seed are bit-identical anyway.

    Sets ``torch.use_deterministic_algorithms``, disables cuDNN autotuning and sets
    ``CUBLAS_WORKSPACE_CONFIG`` as PyTorch's reproducibility notes require.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled


@contextlib.contextmanager
def out_of_memory_as_error(batch_size: int) -> Iterator[None]:
    """Turn a CUDA out-of-memory error into a :class:`DeviceMemoryError` that says what to do."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as err:
        raise DeviceMemoryError(
            f"the device ran out of memory at batch size {batch_size}; lower batch_size "
            "(or eval_batch_size), or free the device") from err
