"""The prepared GPU script runs end to end on tiny archives the test makes (CPU, small CNN), and
its summary feeds the offline CIFAR-10 chapter: a GPU session must not be the first to find a bug."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mimlib import build_model
from mimlib.companion import analysis
from mimlib.companion.analysis import plots
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
SANDBOX = """
import importlib.abc, importlib.machinery, sys
LACKS = {lacks!r}
class Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # found (probes such as torch._dynamo's find_spec pass), but importing it fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in LACKS:
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {{spec.name!r}} (the device has none)")
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, Absent())
"""
RETURNED_NAME = re.compile(r"[A-Za-z0-9._-]+")  # what the device tool brings back from $OUT


@pytest.fixture
def device_like_env(tmp_path: Path) -> dict[str, str]:
    """An environment for subprocesses where what the device lacks cannot be imported (a
    sitecustomize on PYTHONPATH), with this interpreter first on PATH as ``python``."""
    site = tmp_path / "device-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SANDBOX.format(lacks=DEVICE_LACKS))
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{site}",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["python", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_only_what_the_device_has_is_importable_and_the_benchmark_imports(
        device_like_env: dict[str, str]) -> None:
    out = _python(device_like_env, "-c", "import pandas")
    assert out.returncode != 0 and "No module named 'pandas' (the device has none)" in out.stderr
    out = _python(device_like_env, "-c", "import benchmarks.run, torch; print('imported')")
    assert out.returncode == 0 and "imported" in out.stdout, out.stderr[-2000:]


@pytest.mark.slow
def test_the_prepared_device_call_runs_end_to_end_and_returns_what_the_book_reads(
        tmp_path: Path, device_like_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/gpu_run.sh as the device runs it (small CNN, CPU, tiny archives, only the
    first benchmark section): seven files in $OUT, all of which the device tool returns."""
    data, out = tmp_path / "carry", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    _archives(data)
    env = {**device_like_env, "OUT": str(out), "CARRY": str(data), "BUDGET": "0.001",
           "BENCHMARK_ARGS": "--quick --skip b c d g",
           "OFFLINE_ARGS": "--arch small_cnn --device cpu --probe-steps 2"}
    run = subprocess.run(["bash", "scripts/gpu_run.sh"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    returned = sorted(p.name for p in out.iterdir())
    assert returned == ["benchmark.json", "benchmark.log", "gpu.txt", "offline.log",
                        "small_cnn_cifar10_jpeg.pt", "store.tar.gz", "summary.json"]
    assert all(p.is_file() and RETURNED_NAME.fullmatch(p.name) for p in out.iterdir())
    assert sum(p.stat().st_size for p in out.iterdir()) < 16 * 2**20
    with tarfile.open(out / "store.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("/record.json") for n in names)
    assert any(n.endswith("/scores.npz") for n in names)
    assert not any(n.endswith("model.pt") for n in names)  # weights: the checkpoint alone
    bench = json.loads((out / "benchmark.json").read_text())
    assert {r["measure"][:3] for r in bench["rows"]} == {"(a)", "(f)"}  # b, c, d skipped
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arch"] == "small_cnn" and summary["epochs"] == 1  # at least one epoch
    assert set(summary["protocols"]) == {"corrected", "faithful"} and summary["unfinished"] == []
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
    _the_chapter_shows(out, tmp_path, monkeypatch)


def _the_chapter_shows(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline CIFAR-10 chapter, run on these results as the book runs it (smoke profile),
    shows them with their origin and warns that one epoch is not the recipe's hundred."""
    from mimlib.companion.run.orchestrate import notebook_parameters
    from mimlib.companion.run.papermill_run import execute_notebook
    from mimlib.companion.book.profiles import load_profile

    name = "14_offline_cifar10"
    params = notebook_parameters(ROOT, name, load_profile("smoke"),
                                 [("gpu_results", str(results))])
    executed = tmp_path / f"{name}.ipynb"
    monkeypatch.setenv("MIMLIB_EXPORTS", str(tmp_path / "exports"))
    monkeypatch.setenv("MIMLIB_RESULTS", str(tmp_path / "store"))
    result = execute_notebook(ROOT, name, params, executed)
    assert result.status == "ok", result.error
    outputs = [o for c in json.loads(executed.read_text())["cells"] for o in c.get("outputs", [])]
    shown = "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "GPU run on cpu" in shown and "awaits a GPU run" not in shown
    assert "pretrained for 1 of the OE recipe" in shown
    assert (tmp_path / "exports" / "smoke" / "tbl-offline-means.csv").is_file()


def test_a_failed_device_call_still_returns_its_logs(tmp_path: Path,
                                                     device_like_env: dict[str, str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    env = {**device_like_env, "OUT": str(out), "CARRY": str(tmp_path),
           "BENCHMARK_ARGS": "--skip a b c d g", "OFFLINE_ARGS": "--arch vgg16 --device cpu"}
    run = subprocess.run(["bash", "scripts/gpu_run.sh"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode != 0
    assert sorted(p.name for p in out.iterdir()) == ["benchmark.json", "benchmark.log",
                                                     "gpu.txt", "offline.log"]
    assert "vgg16" in (out / "offline.log").read_text()  # the error that stopped it


def _offline_script():
    spec = importlib.util.spec_from_file_location("gpu_offline_cifar10",
                                                  ROOT / "scripts" / "gpu_offline_cifar10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pretraining_leaves_time_for_fine_tuning_and_scoring_before_the_deadline() -> None:
    script = _offline_script()
    after = script.AFTER_PRETRAINING_EPOCHS * 2.0 + script.SCORING_SECONDS  # 2 s an epoch
    assert script.affordable_epochs(200, 2.0, 100) == 100  # no deadline: the budget (capped)
    assert script.affordable_epochs(150, 2.0, 100) == 75
    assert script.affordable_epochs(150, 2.0, 100, seconds_left=500) == 75
    assert script.affordable_epochs(150, 2.0, 100, seconds_left=after + 40) == 20
    assert script.affordable_epochs(150, 2.0, 100, seconds_left=after - 40) == 1  # at least one


def test_a_call_cut_short_keeps_the_protocol_that_finished(tmp_path: Path, monkeypatch) -> None:
    """The device stops the offline run during the faithful protocol: the summary (written
    after each protocol) and the checkpoint of what finished are there, and the book says so."""
    script = _offline_script()
    data, out = tmp_path / "carry", tmp_path / "out"
    data.mkdir()
    _archives(data)
    mim_model = script.Experiment.mim_model

    def stopped_during_faithful(self, *args, **kwargs):
        if self.setup.protocol == "faithful":
            raise TimeoutError("the device call's deadline")
        return mim_model(self, *args, **kwargs)

    monkeypatch.setattr(script.Experiment, "mim_model", stopped_during_faithful)
    with pytest.raises(TimeoutError):
        script.main(["--data", str(data), "--out", str(out), "--arch", "small_cnn",
                     "--device", "cpu", "--budget", "0.001", "--probe-steps", "2"])
    summary = analysis.gpu_summary(str(out))
    assert list(summary["protocols"]) == ["corrected"] and summary["unfinished"] == ["faithful"]
    assert sorted(p.name for p in out.iterdir()) == ["small_cnn_cifar10_jpeg.pt", "store",
                                                     "summary.json"]
    warnings = analysis.gpu_warnings(summary)
    assert warnings[0] == ("The GPU call ended before the faithful protocol finished: its rows "
                           "are missing.")
    assert analysis.gpu_overview(summary)["protocol"].tolist() == ["corrected"]


def test_a_device_call_past_its_deadline_stops_and_returns_its_logs(
        tmp_path: Path, device_like_env: dict[str, str]) -> None:
    """An offline run slower than its limit is stopped by the script itself (so it can still
    pack), not by the device tool. The limit is the test's own (OFFLINE_LIMIT), not what the
    benchmark left of CALL_LIMIT, which shrank to nothing on a loaded machine."""
    data, out = tmp_path / "carry", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    _archives(data)
    env = {**device_like_env, "OUT": str(out), "CARRY": str(data), "CALL_LIMIT": "3600", "OFFLINE_LIMIT": "30",
           "BENCHMARK_ARGS": "--skip a b c d g",  # a probe that would run for hours:
           "OFFLINE_ARGS": "--arch small_cnn --device cpu --probe-steps 1000000"}
    run = subprocess.run(["bash", "scripts/gpu_run.sh"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 124
    assert sorted(p.name for p in out.iterdir()) == ["benchmark.json", "benchmark.log",
                                                     "gpu.txt", "offline.log"]
    log = (out / "offline.log").read_text()
    assert "data: 48 training" in log and "stopped at the call's deadline (30 s for the offline experiment)" in log
