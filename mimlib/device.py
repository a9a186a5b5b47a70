"""Device choice, precision and determinism switches shared by training and evaluation."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np
import torch

from .errors import ConfigError, DeviceMemoryError


def planned_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device a setting names, checked for its form only: what a store key and a setting
    check read, so that results computed on a device are found on a machine without it.
    ``auto`` is the one setting whose meaning is the machine (CUDA when present, else the CPU):
    a profile whose results are read elsewhere pins its device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from err


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device a step computes on: :func:`planned_device`, refused when it is absent."""
    dev = planned_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(dev)!r} was asked for but no CUDA device is available "
                          "here, where a step computes on it; use device='auto' or 'cpu' "
                          "(stored results are read on any machine)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {str(dev)!r} was asked for but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s), where a step computes on "
                          "it; use 'cuda' or 'cpu'")
    return dev


#: Numeric precisions of training and evaluation: fp32, or bf16 autocast (CUDA, and CPUs with
#: native bf16 instructions: AVX-512 BF16 / AMX, as oneDNN reports them).
PRECISIONS = ("fp32", "bf16")
#: Memory layouts of images and convolution weights.
LAYOUTS = ("contiguous", "channels_last")
EVAL_PRECISIONS = PRECISIONS  # the evaluation forward passes' choices (the same two)


def bf16_native(device: torch.device) -> bool:
    """Whether the device computes bf16 natively (emulated bf16 on a CPU is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def planned_precision(device: torch.device, precision: str = "auto") -> str:
    """The precision a setting names on a device, without asking the hardware (store keys read
    it): ``auto`` is bf16 on CUDA and fp32 elsewhere (a CPU's bf16 is a choice the caller makes,
    with its measured effect on the numbers)."""
    if precision not in ("auto", *PRECISIONS):
        raise ConfigError(f"precision must be one of {['auto', *PRECISIONS]}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """The precision a step computes in: :func:`planned_precision`, with bf16 refused where
    this machine would emulate it."""
    planned = planned_precision(device, precision)
    if planned == "bf16" and not bf16_native(device):
        raise ConfigError(f"precision 'bf16' was asked for on {device}, which has no native bf16 "
                          "(AVX-512 BF16 / AMX on a CPU), and this step computes (its result is "
                          "not stored): emulated bf16 would be slower than fp32. Compute it on a "
                          "machine with native bf16 or a GPU, or use precision='fp32'; stored "
                          "bf16 results are read on any machine")
    return planned


def resolve_layout(device: torch.device, layout: str = "auto") -> str:
    """``auto``: channels_last on CUDA, contiguous on a CPU. A rule, not a timing, so a store
    key that names the layout is the same on every machine; the speed benchmark measures both
    layouts where a reader wants the faster one (then name it)."""
    if layout not in ("auto", *LAYOUTS):
        raise ConfigError(f"layout must be one of {['auto', *LAYOUTS]}, got {layout!r}")
    if layout == "auto":
        return "channels_last" if device.type == "cuda" else "contiguous"
    return layout


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when ``precision`` (already resolved) is bf16, plain fp32 otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def eval_precision(device: torch.device, precision: str = "fp32") -> Iterator[None]:
    """The evaluation forward passes in the given precision: fp32 (the default, as the authors
    ran; also TF32 off on CUDA, so GPU scores are fp32 scores) or bf16 autocast."""
    if precision not in EVAL_PRECISIONS:
        raise ConfigError(f"eval_precision must be one of {EVAL_PRECISIONS}, got {precision!r}")
    if precision == "bf16":
        with autocast(device, resolve_precision(device, "bf16")):
            yield
    elif device.type != "cuda":
        yield
    else:
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def in_layout(model: torch.nn.Module, layout: str) -> Iterator[torch.memory_format]:
    """The model's 4-d weights in ``layout`` for the block, contiguous again after it (so a
    model trained or scored in channels_last is stored and used like any other); yields the
    memory format that inputs should take."""
    if layout != "channels_last":
        yield torch.contiguous_format
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield torch.channels_last
    finally:
        model.to(memory_format=torch.contiguous_format)


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
