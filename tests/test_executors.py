"""Where notebooks run: worker processes and Slurm jobs through submitit, against a serial run.

The Slurm path is tested through submitit with stand-in ``sbatch`` / ``sacct`` / ``scancel`` /
``srun`` on PATH; ``sbatch`` runs each submitted script here, as a cluster would, with Slurm's
variables set."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from mimlib.errors import ConfigError
from mimlib.companion.run.executors import ExecutorSettings, executor_settings
from mimlib.companion.run.orchestrate import run_notebooks
from mimlib.companion.results.store import Store

ROOT = Path(__file__).resolve().parents[1]
TINY = [("setup.pretrain_epochs", "0.2"), ("setup.train_limit", "300"),
        ("setup.test_limit", "100"), ("setup.ood_limit", "100"), ("mim.steps", "4")]


def test_settings_come_from_the_profile_then_the_command_line() -> None:
    profile = {"executor": {"slurm": {"partition": "gpu", "gpus_per_job": 2,
                                      "sbatch": {"account": "lab"}}}}
    s = executor_settings(profile, "slurm", time_min=30, partition=None)
    assert (s.kind, s.partition, s.gpus_per_job, s.time_min, s.sbatch) == \
        ("slurm", "gpu", 2, 30, {"account": "lab"})
    assert executor_settings({}, None) == ExecutorSettings()  # local, today's behaviour
    with pytest.raises(ConfigError, match=r"executor must be one of \['local', 'processes', 'slurm'\], got 'mpi'"):
        executor_settings({}, "mpi")
    with pytest.raises(ConfigError, match=r"unknown executor setting\(s\) \['gpus'\]"):
        executor_settings({"executor": {"slurm": {"gpus": 1}}}, "slurm")
    with pytest.raises(ConfigError, match="workers must be a whole number >= 1"):
        executor_settings({}, "processes", workers=0)


def _project(root: Path) -> Path:
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    return root


def _store_summary(store: Path) -> dict[str, object]:
    """Every entry's key and result (timings aside): what two runs must agree on."""
    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k not in ("seconds", "timings", "fit", "score")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return {f"{e.record['kind']}/{e.path.name}": strip(e.record["result"])
            for e in Store(store).entries()}


def _table(path: Path) -> str:
    """An exported table as text, without its wall-time columns (the only honest difference)."""
    import pandas as pd

    df = pd.read_csv(path, skiprows=1)
    return df.drop(columns=[c for c in df.columns if "seconds" in c]).to_csv(index=False)


@pytest.mark.slow
def test_two_worker_processes_give_the_store_and_tables_of_a_serial_run(
        tmp_path, monkeypatch) -> None:
    runs = {}
    for kind in ("local", "processes"):
        root = _project(tmp_path / kind)
        monkeypatch.setenv("MIMLIB_RESULTS", str(root / "store"))
        monkeypatch.setenv("MIMLIB_EXPORTS", str(root / "exports"))
        results = run_notebooks(root, ["01_mixed_samples", "02_pretraining"], "smoke", TINY,
                                progress=False, executor=ExecutorSettings(kind, workers=2))
        assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]
        runs[kind] = root
    serial, parallel = (_store_summary(runs[k] / "store") for k in ("local", "processes"))
    assert serial == parallel and any(k.startswith("pretrain/") for k in serial)
    assert sum(k.startswith("pretrain/") for k in parallel) == 1  # the shared base, once
    tables = {k: {p.name: _table(p) for p in (runs[k] / "exports" / "smoke").glob("*.csv")}
              for k in runs}
    assert tables["local"] and tables["local"] == tables["processes"]
    manifest = json.loads((runs["processes"] / "book" / "executed" / "manifest.json").read_text())
    assert {v["status"] for v in manifest.values()} == {"ok"}
    assert list((runs["processes"] / "results" / "jobs").iterdir())  # the jobs' logs are kept


SBATCH = """#!/usr/bin/env bash
# stand-in sbatch: keep the script, run it here in the background with Slurm's variables
set -e
id=$(( $(cat "$FAKE_SLURM/next" 2>/dev/null || echo 100) + 1 ))
echo $id > "$FAKE_SLURM/next"
cp "$1" "$FAKE_SLURM/submitted-$id.sh"
out=$(sed -n 's/^#SBATCH --output=//p' "$1" | sed "s/%j/$id/g; s/%t/0/g")
err=$(sed -n 's/^#SBATCH --error=//p' "$1" | sed "s/%j/$id/g; s/%t/0/g")
mkdir -p "$(dirname "$out")"
echo RUNNING > "$FAKE_SLURM/state-$id"
( export SLURM_JOB_ID=$id SLURM_NTASKS=1 SLURM_JOB_NUM_NODES=1 SLURM_NODEID=0 \\
         SLURM_JOB_NODELIST=localhost SLURM_PROCID=0 SLURM_LOCALID=0
  if bash "$1" > "$out" 2> "$err"; then s=COMPLETED; else s=FAILED; fi
  echo $s > "$FAKE_SLURM/state-$id" ) > /dev/null 2>&1 &
echo "Submitted batch job $id"
"""
SACCT = """#!/usr/bin/env bash
# stand-in sacct -o JobID,State,NodeList --parsable2 -j ID ...: the states sbatch wrote
echo "JobID|State|NodeList"
while [ $# -gt 0 ]; do
  if [ "$1" = "-j" ]; then echo "$2|$(cat "$FAKE_SLURM/state-$2" 2>/dev/null || echo PENDING)|localhost"; shift; fi
  shift
done
"""
SCANCEL = """#!/usr/bin/env bash
exit 0
"""
SRUN = """#!/usr/bin/env bash
echo "stand-in srun: mimlib's jobs run python directly (use_srun=False)" >&2
exit 1
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("sbatch", SBATCH), ("sacct", SACCT), ("scancel", SCANCEL),
                       ("srun", SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    return state


@pytest.mark.slow
def test_slurm_jobs_carry_their_resources_environment_and_command(
        tmp_path, monkeypatch, fake_slurm) -> None:
    import nbformat

    root = _project(tmp_path / "project")
    nb = nbformat.read(root / "notebooks" / "01_mixed_samples.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('deliberate: job 2 fails')"))
    broken = root / "notebooks" / "16_broken.ipynb"
    nbformat.write(nb, broken)
    monkeypatch.setenv("MIMLIB_RESULTS", str(root / "store"))
    monkeypatch.setenv("MIMLIB_EXPORTS", str(root / "exports"))
    settings = ExecutorSettings("slurm", partition="testq", gpus_per_job=1, cpus_per_job=2,
                                time_min=30, sbatch={"account": "lab"})
    results = run_notebooks(root, ["01_mixed_samples", "16_broken"], "smoke", TINY,
                            progress=False, executor=settings)
    assert [r.status for r in results] == ["ok", "failed"]
    assert "deliberate: job 2 fails" in results[1].error
    assert results[1].executed.endswith("book/failed/16_broken.ipynb")  # its traceback
    assert Path(results[1].log).is_file()  # and the job's log
    scripts = sorted(fake_slurm.glob("submitted-*.sh"))
    assert len(scripts) == 3  # the base models first, then one job per notebook
    text = scripts[-1].read_text()
    for flag in ("--partition=testq", "--gpus-per-node=1", "--cpus-per-task=2", "--time=30",
                 "--account=lab", "--job-name=mimlib", "--nodes=1"):
        assert f"#SBATCH {flag}\n" in text, flag
    assert "export SUBMITIT_EXECUTOR=slurm" in text
    assert f"{sys.executable} -u -m submitit.core._submit" in text
    assert (root / "book" / "executed" / "01_mixed_samples.ipynb").is_file()
