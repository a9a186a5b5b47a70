"""Nothing lost, nothing silently wrong: forced recomputes, what-if runs, two runs at once, a
read-only store and terminated runs (issue 36; the catalogue is in test_reliability.py)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mimlib.companion.analysis.runtime import runtime_table
from mimlib.companion.results.experiment import Experiment
from mimlib.companion.results.setup import Setup
from mimlib.companion.results.store import Store
from mimlib.errors import MimlibError
from test_reliability import ROOT, _files, project  # noqa: F401  # project: a fixture


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120.0) -> None:
    """Until ``path`` exists (the subprocess says it got there) or the subprocess ended."""
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), proc.communicate()


# ------------------------------------------------------------------ forced recomputes

def test_a_forced_recompute_whose_write_fails_keeps_the_stored_entry(store_root: Path) -> None:
    store = Store(store_root)
    old = store.put("finetune", {"k": 5}, {"auroc": 0.81},
                    files={"model.pt": lambda p: p.write_bytes(b"weights of the stored run")})
    before = _files(old.path)

    def disk_full(path: Path) -> None:
        path.write_bytes(b"half of the new weights")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with pytest.raises(OSError, match="No space left"):
        store.get_or_compute("finetune", {"k": 5},
                             lambda: ({"auroc": 0.93}, None, {"model.pt": disk_full}),
                             force=True)
    kept = store.get("finetune", {"k": 5})
    assert kept is not None and kept.record["result"] == {"auroc": 0.81}
    assert _files(kept.path) == before
    assert [p.name for p in (store_root / "finetune").iterdir()] == [old.path.name]


_FORCED = """
import os, sys
from pathlib import Path
from mimlib.companion.results.store import Store

root, step = Path(sys.argv[1]), sys.argv[2]
store = Store(root)
key = store.path("finetune", {"k": 5}).name
replace = os.replace

def killed(src, dst, *args, **kwargs):
    name = Path(src).name
    if {"aside": name == key, "swap": name.startswith(".tmp-") and Path(dst).name == key,
        "cleanup": name.startswith(".replaced-")}[step]:
        os._exit(9)  # SIGKILL: no except, no finally
    return replace(src, dst, *args, **kwargs)

os.replace = killed
store.get_or_compute("finetune", {"k": 5}, lambda: ({"auroc": 0.93}, None,
                     {"model.pt": lambda p: p.write_bytes(b"new weights")}), force=True)
"""


@pytest.mark.parametrize("step, survivor", [("aside", 0.81), ("swap", 0.81),
                                            ("cleanup", 0.93)])
def test_a_forced_recompute_killed_at_any_step_leaves_one_complete_entry(
        store_root: Path, step: str, survivor: float) -> None:
    """Killed before the old entry is moved aside, before the new one is renamed into place,
    or before the old one is removed: one complete entry is found, and the key's next writer
    settles the folder."""
    store = Store(store_root)
    store.put("finetune", {"k": 5}, {"auroc": 0.81},
              files={"model.pt": lambda p: p.write_bytes(b"old weights")})
    done = subprocess.run([sys.executable, "-c", _FORCED, str(store_root), step],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    found = store.get("finetune", {"k": 5})
    assert found is not None and found.record["result"] == {"auroc": survivor}
    weights = b"new weights" if survivor == 0.93 else b"old weights"
    assert found.file("model.pt").read_bytes() == weights
    assert [e.record["result"] for e in store.entries("finetune")] == [{"auroc": survivor}]
    again = store.get_or_compute("finetune", {"k": 5}, lambda: ({"auroc": 0.95}, None, None),
                                 force=True)
    assert again.record["result"] == {"auroc": 0.95} and again.path == store.path(
        "finetune", {"k": 5})
    assert [p.name for p in (store_root / "finetune").iterdir()] == [again.path.name]


# ------------------------------------------------------------------ what-if runs

def test_a_richer_curve_never_rewrites_the_stored_entry(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stored without a curve (committed, without weights), asked for one (-p
    eval_every): the curve is an entry of its own, the weights trained for it go to
    ROOT/.recomputed, and the stored entry stays byte for byte."""
    setup = Setup(ood_sets=("gaussian",), pretrain_epochs=1, train_limit=300, test_limit=100,
                  ood_limit=100, device="cpu")
    exp = Experiment(setup, Store(tmp_path), profile="committed")
    base = exp.base_model()
    plain = exp.mim_model(base, steps=4, k=3)
    entry = exp.store.get("finetune", plain.recipe)
    (entry.path / "model.pt").unlink()  # as committed
    committed = _files(entry.path)

    what_if = Experiment(setup, Store(tmp_path), profile="what-if")
    run = what_if.mim_model(what_if.base_model(), steps=4, k=3, eval_every=2)
    assert [e["step"] for e in run.evals] == [0, 2, 4]
    assert all(0.0 <= e["mean_auroc"] <= 1.0 and 0.0 <= e["accuracy"] <= 1.0
               for e in run.evals)
    assert run.log == plain.log  # the same run, with its evaluations
    assert _files(entry.path) == committed
    assert (tmp_path / ".recomputed" / "finetune" / entry.path.name / "model.pt").is_file()
    curves = Store(tmp_path).entries("curve")
    assert len(curves) == 1 and curves[0].record["result"]["evals"] == run.evals
    again_row = runtime_table(Store(tmp_path)).query("key == @curves[0].path.name")
    assert again_row["what"].tolist() == ["mim (again, for its curve)"]  # what it cost
    assert again_row["steps"].tolist() == [4] and again_row["seconds"].iloc[0] > 0

    def untrained(*args, **kwargs):
        raise AssertionError("the stored curve is read, not trained again")

    monkeypatch.setattr("mimlib.companion.results.experiment.mim_finetune", untrained)
    again = Experiment(setup, Store(tmp_path)).mim_model(base, steps=4, k=3, eval_every=2)
    assert again.evals == run.evals
    assert _files(entry.path) == committed


# ------------------------------------------------------------------ two runs at once

def _manifest(project: Path) -> dict:
    return json.loads((project / "book" / "executed" / "manifest.json").read_text())


def test_two_runs_at_once_keep_each_others_manifest_records(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While one run executes 02, another runs 03 with k = 3: the first one's manifest update
    keeps that record, so 03 with the default k runs again instead of keeping the k = 3 page."""
    import papermill as pm

    from mimlib.companion.run.orchestrate import run_notebooks

    def execute(source: str, executed: str, parameters: dict, **kwargs) -> None:
        if "02_pretraining" in source:  # meanwhile, in another terminal
            other = run_notebooks(project, ["03_finetuning"], "smoke", [("mim.k", "3")],
                                  progress=False)
            assert [r.status for r in other] == ["ok"]
        shutil.copy(source, executed)

    monkeypatch.setattr(pm, "execute_notebook", execute)
    assert [r.status for r in run_notebooks(project, ["03_finetuning"], "smoke",
                                            progress=False)] == ["ok"]
    assert [r.status for r in run_notebooks(project, ["02_pretraining"], "smoke",
                                            progress=False)] == ["ok"]
    manifest = _manifest(project)
    assert manifest["03_finetuning"]["parameters"]["mim"]["k"] == 3
    assert manifest["02_pretraining"]["status"] == "ok"
    again = run_notebooks(project, ["03_finetuning"], "smoke", progress=False)
    assert [r.status for r in again] == ["ok"]  # not "skipped": the page held k = 3
    assert _manifest(project)["03_finetuning"]["parameters"]["mim"]["k"] == 5


# ------------------------------------------------------------------ a read-only store

def _read_only(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Creating anything under ``root`` fails as on a read-only mount (the tests run as
    root, whom file modes do not stop)."""
    inside = str(root.resolve())

    def guard(call):
        def guarded(path, *args, **kwargs):
            if os.path.abspath(path).startswith(inside):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return call(path, *args, **kwargs)
        return guarded

    real_open = os.open

    def opened(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            return guard(real_open)(path, flags, *args, **kwargs)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", guard(os.mkdir))
    monkeypatch.setattr(os, "open", opened)


def test_a_read_only_store_is_read_and_says_where_new_results_go(
        store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(store_root)
    store.put("scores", {"k": 1}, {"auroc": 0.75})
    shutil.rmtree(store_root / ".locks")  # as in a copy of the committed results
    committed = _files(store_root)
    _read_only(monkeypatch, store_root)
    assert store.get("scores", {"k": 1}).record["result"] == {"auroc": 0.75}
    assert store.get_or_compute("scores", {"k": 1}, lambda: 1 / 0).record["result"] == {
        "auroc": 0.75}
    computed = []
    with pytest.raises(MimlibError) as err:
        store.get_or_compute("scores", {"k": 2},
                             lambda: computed.append(1) or ({"auroc": 0.8}, None, None))
    message = str(err.value)
    assert f"results store {store_root} cannot be written" in message
    assert "Read-only file system" in message and store.path("scores", {"k": 2}).name in message
    assert "-p store PATH" in message and "MIMLIB_RESULTS" in message
    assert not computed  # stopped before the work, not after it
    monkeypatch.undo()
    assert _files(store_root) == committed


def test_a_record_without_its_result_is_named(store_root: Path) -> None:
    store = Store(store_root)
    entry = store.put("scores", {"k": 1}, {"auroc": 0.75})
    record = json.loads(entry.file("record.json").read_text())
    del record["result"]
    entry.file("record.json").write_text(json.dumps(record))
    for read in (lambda: store.get("scores", {"k": 1}), store.entries):
        with pytest.raises(MimlibError, match="has a record.json without its result") as err:
            read()
        assert str(entry.path) in str(err.value)
        assert f"git checkout -- {entry.path}" in str(err.value)


# ------------------------------------------------------------------ terminated runs

_TERMINATED = """
import sys, time
from pathlib import Path
import papermill as pm
from mimlib.companion.run import cli

root, marker = sys.argv[1], Path(sys.argv[2])

def execute(source, executed, **kwargs):  # a long chapter
    Path(executed).write_text("the page so far")
    marker.write_text("running")
    while True:
        time.sleep(0.05)

pm.execute_notebook = execute
sys.exit(cli.main(["--root", root, "run", "02", "--profile", "smoke", "--no-book", "--quiet"]))
"""


def test_a_terminated_run_removes_its_temporary_files(project: Path, tmp_path: Path) -> None:
    """SIGTERM (a Slurm time-out, ``timeout``) stops a run as Ctrl-C does: its running page,
    staging folder and usage file go, and the last good page stays."""
    executed = project / "book" / "executed"
    executed.mkdir(parents=True)
    (executed / "02_pretraining.ipynb").write_text("the last good page")
    marker = tmp_path / "running"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _TERMINATED, str(project), str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for(marker, proc)
    assert {p.name.split(".")[1].split("-")[0] for p in executed.iterdir()
            if p.name.startswith(".")} == {"02_pretraining", "staging"}  # page, exports
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "mimlib: terminated" in err
    assert sorted(p.name for p in executed.iterdir()) == ["02_pretraining.ipynb"]
    assert (executed / "02_pretraining.ipynb").read_text() == "the last good page"


def test_the_next_run_removes_what_dead_runs_left_and_nothing_else(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import papermill as pm

    from mimlib.companion.run.orchestrate import run_notebooks

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    host = socket.gethostname()
    executed = project / "book" / "executed"
    executed.mkdir(parents=True)
    left = {f".03_finetuning.{host}-{dead}.running.ipynb": False,
            f".03_finetuning.{dead}.running.ipynb": False,  # named before hosts were
            f".staging-03_finetuning.{host}-{dead}.x1y2": False,
            f".staging-03_finetuning.{host}-{dead}.x1y2.usage": False,
            f".03_finetuning.{host}-{alive.pid}.running.ipynb": True,  # a run going on
            f".staging-03_finetuning.{host}-{alive.pid}.a1b2": True,
            f".staging-03_finetuning.node-b-{dead}.c3d4": True,  # another host's job
            ".staging-03_finetuning-k9j8": True}  # no process named: not judged
    try:
        for name in left:
            if name.startswith(".staging") and not name.endswith(".usage"):
                (executed / name).mkdir()
                (executed / name / "table.csv").write_text("a,b\n")
            else:
                (executed / name).write_text("left")
        monkeypatch.setattr(pm, "execute_notebook",
                            lambda source, executed, **kw: shutil.copy(source, executed))
        assert [r.status for r in run_notebooks(project, ["02_pretraining"], "smoke",
                                                progress=False)] == ["ok"]
    finally:
        alive.communicate(b"")
    assert sorted(p.name for p in executed.iterdir()) == sorted(
        [name for name, kept in left.items() if kept]
        + ["02_pretraining.ipynb", "manifest.json", "manifest.lock"])
