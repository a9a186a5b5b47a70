"""The prepared GPU script runs end to end on tiny archives the test makes (CPU, small CNN), and
its summary feeds the offline CIFAR-10 chapter: a GPU session must not be the first to find a bug."""

from __future__ import annotations

import importlib.util
import io
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


def _script():
    spec = importlib.util.spec_from_file_location("gpu_offline_cifar10",
                                                  ROOT / "scripts" / "gpu_offline_cifar10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_gpu_script_runs_end_to_end_and_its_summary_renders(tmp_path: Path) -> None:
    data, out = tmp_path / "carry", tmp_path / "out"
    data.mkdir()
    _archives(data)
    summary = _script().main(["--data", str(data), "--out", str(out), "--arch", "small_cnn",
                              "--device", "cpu", "--budget", "0.001", "--probe-steps", "2"])
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
