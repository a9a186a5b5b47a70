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


#: What another reader's machine answers, for processes the tests start (kernels included):
#: an AVX2 CPU with no native bf16 (torch's and oneDNN's own switches), the given thread count,
#: and CUDA visible though the profile is pinned to the CPU (``tests/machines/sitecustomize``).
def other_machine_env(threads: int = 1) -> dict[str, str]:
    """The environment variables that make a process play that machine (see
    ``tests/machines/sitecustomize.py``); the caller's PYTHONPATH is kept after its folder."""
    path = os.pathsep.join(filter(None, [str(ROOT / "tests" / "machines"),
                                         os.environ.get("PYTHONPATH")]))
    return {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MIMLIB_TEST_THREADS": str(threads), "MIMLIB_TEST_CUDA_VISIBLE": "1", "PYTHONPATH": path}


@pytest.fixture(params=["no native bf16", "CUDA visible", "one thread", "four threads"])
def other_machine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """This process answers as another machine would, one answer at a time: a CPU without
    native bf16 (AVX2 kernels), CUDA available (the profiles read are pinned to the CPU), one
    thread or four. Layouts are never timed (a rule of the device: test_train)."""
    answer = request.param
    if answer == "no native bf16":
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    elif answer == "CUDA visible":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1 if answer == "one thread" else 4)
        request.addfinalizer(lambda: torch.set_num_threads(threads))
    return answer


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
    committed results and for the browser test of the book readers see, on another machine
    than the one that made the store (:func:`other_machine_env`: no native bf16, AVX2 kernels,
    one thread, CUDA visible), as a reader's is."""
    base = tmp_path_factory.mktemp("fresh-clone")
    copy = base / "clone"
    ignore = shutil.ignore_patterns(".venv", ".git", "_build", "executed", "failed", "exports",
                                    "cache", "__pycache__", "*.egg-info", ".pytest_cache")
    shutil.copytree(ROOT, copy, ignore=ignore)
    assert not (base / "shared").exists()
    env = {**os.environ, **other_machine_env(threads=1), "MIMLIB_CACHE": str(base / "decoded"),
           "MIMLIB_DATA": str(base / "no")}
    env.pop("MIMLIB_RESULTS", None)
    env.pop("MIMLIB_EXPORTS", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mimlib.companion.run.cli", "reproduce", "--quiet"], cwd=copy,
                          env=env, capture_output=True, text=True, timeout=1800)
    return Clone(copy, proc.returncode, proc.stdout[-4000:] + proc.stderr[-4000:],
                 time.perf_counter() - start)
