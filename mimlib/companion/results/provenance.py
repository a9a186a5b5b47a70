"""What every stored record says made it: library versions, Python, platform, device, and the
git revision of the checkout."""

from __future__ import annotations

import contextlib
import platform
import subprocess
from pathlib import Path
from typing import Any


def environment() -> dict[str, Any]:
    """Library versions, Python, platform and the git revision of the project."""
    versions = {}
    for name in ("torch", "torchvision", "numpy", "sklearn", "pytorch_ood", "mimlib"):
        try:
            versions[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            versions[name] = None
    cuda = None
    with contextlib.suppress(Exception):
        import torch

        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"versions": versions, "python": platform.python_version(),
            "platform": platform.platform(), "device": cuda or "cpu", "git": git_revision()}


def git_revision() -> str | None:
    """``<commit>`` or ``<commit>-dirty`` of the checkout holding this package, else None."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10)
        if rev.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
