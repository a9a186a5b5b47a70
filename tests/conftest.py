"""Shared fixtures: tiny data sets and the real-data archives of ../shared (skipped when absent)."""

from __future__ import annotations

import os
import tarfile
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
