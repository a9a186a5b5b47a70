"""Shared fixtures: tiny data sets and the real-data archives of ../shared (skipped when absent)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(os.environ.get("MIMLIB_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def _quiet_seeded_and_isolated(monkeypatch: pytest.MonkeyPatch,
                               tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("MIMLIB_PROGRESS", "0")
    monkeypatch.setenv("MIMLIB_CACHE", str(tmp_path_factory.getbasetemp() / "decoded-cache"))
    torch.manual_seed(0)


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _unpack(archive: str, dest: Path) -> Path:
    path = SHARED_DATA / archive
    if not path.is_file():
        pytest.skip(f"{path} is absent (real-data tests need ../shared/data)")
    marker = dest / ".unpacked"
    if not marker.exists():
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path) as tar:
            tar.extractall(dest, filter="data")
        marker.touch()
    return dest


@pytest.fixture(scope="session")
def cifar10_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The JPEG CIFAR-10 of ../shared/data, unpacked once per session (train/ and test/)."""
    return _unpack("cifar10-jpeg.tar.xz", tmp_path_factory.getbasetemp() / "cifar10-jpeg")


@pytest.fixture(scope="session")
def tinyimagenet_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Tiny ImageNet test images of ../shared/data, unpacked once per session."""
    return _unpack("tinyimagenet-test.tar.xz", tmp_path_factory.getbasetemp() / "tin") / "images"


ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Clone:
    """A copy of the project as a fresh clone has it, after the README's first command."""

    root: Path
    returncode: int
    output: str
    seconds: float


@pytest.fixture(scope="session")
def committed_book(tmp_path_factory: pytest.TempPathFactory) -> Clone:
    """What a fresh clone does with the README's first command (``mimlib reproduce``, the real
    profile by default): no ../shared beside it, no data, no GPU; every chapter from the
    committed store, then the strict book build. Built once per session, for the tests of the
    committed results and for the browser test of the book readers see."""
    base = tmp_path_factory.mktemp("fresh-clone")
    copy = base / "clone"
    ignore = shutil.ignore_patterns(".venv", ".git", "_build", "executed", "failed", "exports",
                                    "cache", "__pycache__", "*.egg-info", ".pytest_cache")
    shutil.copytree(ROOT, copy, ignore=ignore)
    assert not (base / "shared").exists()
    env = {**os.environ, "MIMLIB_CACHE": str(base / "decoded"), "MIMLIB_DATA": str(base / "no")}
    env.pop("MIMLIB_RESULTS", None)
    env.pop("MIMLIB_EXPORTS", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mimlib.companion.cli", "reproduce", "--quiet"], cwd=copy,
                          env=env, capture_output=True, text=True, timeout=1800)
    return Clone(copy, proc.returncode, proc.stdout[-4000:] + proc.stderr[-4000:],
                 time.perf_counter() - start)
