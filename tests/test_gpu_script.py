"""The prepared GPU script runs end to end on tiny archives the test makes (CPU, small CNN), and
its summary feeds the offline CIFAR-10 chapter: a GPU session must not be the first to find a bug."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mimlib import analysis, build_model, plots
from mimlib.checkpoints import load_checkpoint
from mimlib.detectors import TABLE1_DETECTORS

ROOT = Path(__file__).resolve().parents[1]


def _add_jpeg(tar: tarfile.TarFile, name: str, pixels: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    info = tarfile.TarInfo(name)
    info.size = buffer.tell()
    buffer.seek(0)
    tar.addfile(info, buffer)


def _archives(folder: Path) -> None:
    """CIFAR-like (train/test, two classes of 32x32 JPEGs) and Tiny-ImageNet-like (64x64)
    archives with the names and layouts of the ones in ../shared/data."""
    rng = np.random.default_rng(0)
    with tarfile.open(folder / "cifar10-jpeg.tar.xz", "w:xz") as tar:
        for split, n in (("train", 24), ("test", 12)):
            for c, colour in (("dark", 40), ("bright", 210)):
                for i in range(n):
                    pixels = np.clip(rng.normal(colour, 25, (32, 32, 3)), 0, 255)
                    _add_jpeg(tar, f"{split}/{c}/{i:04d}.jpg", pixels.astype(np.uint8))
    with tarfile.open(folder / "tinyimagenet-test.tar.xz", "w:xz") as tar:
        for i in range(16):
            _add_jpeg(tar, f"images/test_{i}.JPEG",
                      rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


# What the device image lacks (it has torch, torchvision, numpy, scipy, scikit-learn,
# matplotlib and tqdm; scripts/gpu_run.sh carries the pytorch-ood wheel)
DEVICE_LACKS = ("pandas", "yaml", "papermill", "kornia", "IPython", "myst_nb", "nbformat",
                "jupyter_book", "selenium")
BLOCKING_RUNNER = """
import importlib.abc, importlib.machinery, runpy, sys
class Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # found (probes such as torch._dynamo's find_spec pass), but importing it fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in LACKS:
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (the device has none)")
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, Absent())
script, *sys.argv[1:] = sys.argv[1:]
sys.argv[0] = script
runpy.run_path(script, run_name="__main__")
"""


def _run_as_on_the_device(*args: str) -> subprocess.CompletedProcess:
    """Run a script or module of the GPU path with the modules the device lacks blocked."""
    code = f"LACKS = {DEVICE_LACKS!r}\n" + BLOCKING_RUNNER
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_only_what_the_device_has_is_importable_and_the_benchmark_imports(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked.py"
    blocked.write_text("import pandas\n")
    out = _run_as_on_the_device(str(blocked))
    assert out.returncode != 0 and "No module named 'pandas' (the device has none)" in out.stderr
    entry = tmp_path / "entry.py"
    entry.write_text("import benchmarks.run\nprint('imported')\n")
    out = _run_as_on_the_device(str(entry))
    assert out.returncode == 0 and "imported" in out.stdout, out.stderr[-2000:]


@pytest.mark.slow
def test_the_gpu_script_runs_end_to_end_and_its_summary_renders(tmp_path: Path) -> None:
    data, out = tmp_path / "carry", tmp_path / "out"
    data.mkdir()
    _archives(data)
    run = _run_as_on_the_device(str(ROOT / "scripts" / "gpu_offline_cifar10.py"), "--data",
                                str(data), "--out", str(out), "--arch", "small_cnn", "--device",
                                "cpu", "--budget", "0.001", "--probe-steps", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arch"] == "small_cnn" and summary["epochs"] == 1  # at least one epoch
    assert set(summary["protocols"]) == {"corrected", "faithful"}
    methods = set(TABLE1_DETECTORS) | {"MIM"}
    for res in summary["protocols"].values():
        assert set(res["mean_auroc"]) == methods
        assert len(res["rows"]) == len(methods) * 5  # two Tiny-ImageNet sets, three noise sets
        assert all(0 <= r[m] <= 1 for r in res["rows"] for m in ("auroc", "aupr_in", "fpr95"))
        assert [e["step"] for e in res["mim_curve"]] == [0, 1]  # before and after one step
        assert 0 <= res["base_accuracy"] <= 1 and res["pretrain_seconds"] > 0
    # MSP of the base model does not depend on the protocol; the fitted detectors do (ID test
    # set against ID training set)
    corrected, faithful = (summary["protocols"][p]["mean_auroc"] for p in ("corrected",
                                                                          "faithful"))
    assert corrected["MSP"] == faithful["MSP"]
    load_checkpoint(build_model("small_cnn", 2), out / "small_cnn_cifar10_jpeg.pt")
    assert (out / "summary.json").is_file() and (out / "store" / "pretrain").is_dir()

    written = analysis.gpu_summary(str(out))
    overview = analysis.gpu_overview(written)
    assert overview["protocol"].tolist() == ["corrected", "faithful"]
    assert overview["MIM mean AUROC"].tolist() == [corrected["MIM"], faithful["MIM"]]
    means, rows = analysis.gpu_tables(written)
    assert len(means) == len(methods) and len(rows) == 2 * len(methods) * 5
    fig = plots.auroc_curves({p: pd.DataFrame(r["mim_curve"])
                              for p, r in written["protocols"].items()})
    assert len(fig.axes[0].lines) == 2
    assert torch.isfinite(torch.tensor(overview["peak during fine-tuning"].tolist())).all()
