"""Device choice, precision and determinism switches shared by training and evaluation."""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from pathlib import Path
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


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """``auto``: bf16 on CUDA, fp32 elsewhere (a CPU's bf16 is a choice the caller makes, with
    its measured effect on the numbers); ``bf16`` is refused where it would be emulated."""
    if precision not in ("auto", *PRECISIONS):
        raise ConfigError(f"precision must be one of {['auto', *PRECISIONS]}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16" and not bf16_native(device):
        raise ConfigError(f"precision 'bf16' was asked for on {device}, which has no native bf16 "
                          "(AVX-512 BF16 / AMX on a CPU); it would be emulated and slower than "
                          "fp32: use precision='fp32' (or 'auto')")
    return precision


def resolve_layout(device: torch.device, layout: str = "auto") -> str:
    """``auto``: the faster layout of this machine, measured once (see :func:`measured_layout`)."""
    if layout not in ("auto", *LAYOUTS):
        raise ConfigError(f"layout must be one of {['auto', *LAYOUTS]}, got {layout!r}")
    return measured_layout(device) if layout == "auto" else layout


def measured_layout(device: torch.device) -> str:
    """channels_last where a training step of a small CIFAR ResNet stage is at least 10% faster
    in it than in the contiguous layout on this device; measured once per machine, torch
    version and thread count, and remembered (in MIMLIB_CACHE), so a machine's choice and the
    store keys that name it do not flip with timing noise."""
    key = (f"{device.type}-{torch.__version__}-{torch.backends.cpu.get_cpu_capability()}-"
           f"{torch.get_num_threads()}"
           + (f"-{torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    if key in _LAYOUT_CHOICES:
        return _LAYOUT_CHOICES[key]
    path = _layout_file()
    known = _read_json(path)
    if key not in known:
        seconds = {layout: _time_layout(device, layout) for layout in LAYOUTS}
        known[key] = {"layout": ("channels_last" if seconds["channels_last"]
                                 <= 0.9 * seconds["contiguous"] else "contiguous"),
                      "seconds": seconds}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(path)
    _LAYOUT_CHOICES[key] = known[key]["layout"]
    return _LAYOUT_CHOICES[key]


_LAYOUT_CHOICES: dict[str, str] = {}


def _layout_file() -> Path:
    root = os.environ.get("MIMLIB_CACHE") or Path.home() / ".cache" / "mimlib"
    return Path(root) / "measured-layouts.json"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _time_layout(device: torch.device, layout: str, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds of one SGD step of three CIFAR ResNet-like conv blocks."""
    gen = torch.Generator().manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                                  torch.nn.BatchNorm2d(c_out), torch.nn.ReLU())
              for c_in, c_out, stride in ((3, 16, 1), (16, 16, 1), (16, 32, 2), (32, 64, 2))]
    net = torch.nn.Sequential(*blocks).to(device)
    x = torch.randn(128, 3, 32, 32, generator=gen).to(device)
    if layout == "channels_last":
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(
            memory_format=torch.channels_last)
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.enable_grad():  # callers may measure from inside torch.no_grad()
            net(x).square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


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
