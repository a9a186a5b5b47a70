"""The committed results are read on any reader's machine (issue 31): no store key, setting
check or page's flow asks what this machine can do, only a step that computes does.

Where these tests run is the machine that made the committed store (AVX-512 BF16, two
threads, no CUDA); they play another one: a CPU without native bf16 (AVX2), CUDA visible though
the profile is pinned to the CPU, one thread and four. In this process through the
``other_machine`` fixture, in the processes a run starts through ``other_machine_env`` (the
fresh-clone book of test_committed_results is built on that machine too).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import other_machine_env
from mimlib.companion.results.experiment import Experiment
from mimlib.companion.results.setup import Setup
from mimlib.companion.book.profiles import load_profile, profile_parameters
from mimlib.companion.results.setups import setups_of
from mimlib.companion.results.store import RECORD, Store
from mimlib.errors import ConfigError
from test_specs import GOLDEN, _observed

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "results" / "cifar10-cpu" / "store"


def test_every_pinned_key_is_the_same_on_another_machine(other_machine: str,
                                                         tmp_path: Path) -> None:
    """The keys of every setup of five profiles, each kind of base and data spec: as pinned."""
    golden = json.loads(GOLDEN.read_text())
    observed = json.loads(json.dumps(_observed(Store(tmp_path / "store"), tmp_path)))
    if not Setup(**load_profile("cifar10-cpu")["common"]["setup"]).results_only:
        assert observed == golden
    else:  # without ../shared the real profile fetches nothing (see test_specs)
        assert {k: v for k, v in observed.items() if not k.endswith("/needs")} == \
            {k: v for k, v in golden.items() if not k.endswith("/needs")}


def test_the_runtime_pages_bf16_runs_are_found_on_another_machine(other_machine: str) -> None:
    """The fp32 / bf16 pair the runtime page reads: its keys are committed entries, and the
    page has nothing to say about this machine (the runs are stored, nothing computes)."""
    from mimlib.companion.analysis import precision_unmeasurable

    params = profile_parameters(load_profile("cifar10-cpu"), "12_runtime")
    (setup,) = setups_of(params)
    exp = Experiment(setup, Store(STORE))
    base = exp.base_model()
    seed = params["precision_seeds"][0]
    for lam in (params["mim"].get("lam", 1.0), 0.0):
        recipe = exp.mim_recipe(base, **{**params["mim"], "lam": lam, "seed": seed,
                                         "precision": "bf16"})
        assert recipe["train"]["numerics"] == {"precision": "bf16", "layout": "contiguous"}
        assert (exp.store.path("finetune", recipe) / RECORD).is_file(), lam
    assert precision_unmeasurable(exp, params["mim"], params["precision_seeds"]) is None


def test_a_bf16_run_that_must_compute_on_a_cpu_without_it_is_a_sentence_or_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the bf16 runs are not stored (another seed), a machine without native bf16 gets a
    sentence on the runtime page in place of the measurement, and a training step asked for in
    bf16 a ConfigError saying why; with native bf16 the page would compute them."""
    from mimlib.companion.analysis import precision_unmeasurable
    from mimlib.images import ImageSet
    from mimlib.train import mim_finetune

    params = profile_parameters(load_profile("cifar10-cpu"), "12_runtime")
    (setup,) = setups_of(params)
    exp = Experiment(setup, Store(STORE))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert precision_unmeasurable(exp, params["mim"], [7]) is None  # computable here
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    sentence = precision_unmeasurable(exp, params["mim"], [7])
    assert sentence.startswith("Not measurable on this machine: the bf16 runs of the "
                               "comparison (MIM and control, seed 7) are not in the store")
    assert "has no native bf16" in sentence
    images = ImageSet("tiny", torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8),
                      torch.arange(8) % 2, ("a", "b"))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
    with pytest.raises(ConfigError, match="no native bf16.*this step computes"):
        mim_finetune(model, images, steps=1, batch_size=4, k=2, device="cpu", precision="bf16")


@pytest.mark.book
def test_a_clone_on_another_machine_runs_the_runtime_page_from_the_committed_store(
        tmp_path: Path) -> None:
    """The page that stopped the README's first command on an AVX2 CPU (its bf16 runs), run
    from a copy with no ../shared on that machine with four threads: ok, nothing computed."""
    copy = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True, check=True
                           ).stdout.split(b"\0") if (ROOT / ".git").exists() else None
    if files is None:
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", "_build", "executed"))
    else:
        for name in filter(None, files):
            source = ROOT / name.decode()
            if source.is_file():
                (copy / name.decode()).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, copy / name.decode())
    env = {**os.environ, **other_machine_env(threads=4), "MIMLIB_CACHE": str(tmp_path / "cache"),
           "MIMLIB_DATA": str(tmp_path / "no-data")}
    env["PYTHONPATH"] = os.pathsep.join([str(copy / "tests" / "machines"), str(copy)])
    for name in ("MIMLIB_RESULTS", "MIMLIB_EXPORTS", "MIMLIB_SHARED_DATA"):
        env.pop(name, None)
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available(),"
                            " torch.ops.mkldnn._is_mkldnn_bf16_supported(),"
                            " torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())"],
                           cwd=copy, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["True", "False", "AVX2", "4"]  # the machine played
    before = sorted(p.relative_to(copy) for p in (copy / "results").rglob(RECORD))
    proc = subprocess.run([sys.executable, "-m", "mimlib.companion.run.cli", "run", "12_runtime",
                           "--quiet", "--no-book"], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok  12_runtime" in proc.stdout, proc.stdout + proc.stderr
    assert sorted(p.relative_to(copy) for p in (copy / "results").rglob(RECORD)) == before
    assert not (copy / "results" / "cifar10-cpu" / "store" / ".recomputed").exists()
    page = json.loads((copy / "book" / "executed" / "12_runtime.ipynb").read_text())
    text = json.dumps(page)
    assert "tbl-precision" in text and "Not measurable on this machine" not in text
