import json

import numpy as np
import pytest

from mimlib.errors import MimlibError
from mimlib.companion.results.store import Store, config_key


def test_put_then_get_returns_the_record_and_arrays(store_root) -> None:
    store = Store(store_root)
    cfg = {"k": 10, "lr": 1e-4, "sets": ["a", "b"]}
    assert store.get("run", cfg) is None
    entry = store.put("run", cfg, {"auroc": 0.9}, {"scores": np.arange(3.0)})
    again = store.get("run", {"sets": ["a", "b"], "lr": 1e-4, "k": 10})  # key order is irrelevant
    assert again is not None and again.path == entry.path
    assert again.record["result"] == {"auroc": 0.9}
    np.testing.assert_array_equal(again.arrays()["scores"], np.arange(3.0))
    env = again.record["environment"]
    assert {"torch", "numpy", "pytorch_ood", "mimlib"} <= set(env["versions"])
    assert "git" in env and again.record["config"] == cfg


def test_keys_differ_for_different_configurations_and_kinds() -> None:
    assert config_key("a", {"k": 1}) != config_key("a", {"k": 2})
    assert config_key("a", {"k": 1}) != config_key("b", {"k": 1})
    assert config_key("a", {"k": 1.0}) != config_key("a", {"k": "1.0"})


def test_a_failed_computation_leaves_nothing(store_root) -> None:
    store = Store(store_root)
    with pytest.raises(RuntimeError):
        with store.writer("run", {"k": 1}) as tmp:
            (tmp / "partial.npz").write_bytes(b"half")
            raise RuntimeError("killed")
    assert store.get("run", {"k": 1}) is None
    assert list((store_root / "run").iterdir()) == []


def test_get_or_compute_computes_once(store_root) -> None:
    store = Store(store_root)
    calls = []

    def compute():
        calls.append(1)
        return {"v": len(calls)}, None, {"note.txt": lambda p: p.write_text(str(len(calls)))}

    entry = store.get_or_compute("run", {"x": 1}, compute, provenance={"profile": "p"})
    assert entry.record["result"] == {"v": 1} and entry.record["provenance"] == {"profile": "p"}
    assert store.get_or_compute("run", {"x": 1}, compute).record["result"] == {"v": 1}
    assert store.get_or_compute("run", {"x": 1}, compute, force=True).record["result"] == {"v": 2}
    assert store.get("run", {"x": 1}).file("note.txt").read_text() == "2"
    assert len(calls) == 2

    def fails():
        raise RuntimeError("non-finite loss")

    # a forced re-run that fails keeps the stored entry: it is replaced only by a finished one
    with pytest.raises(RuntimeError):
        store.get_or_compute("run", {"x": 1}, fails, force=True)
    assert store.get("run", {"x": 1}).record["result"] == {"v": 2}


def test_a_tampered_entry_is_refused(store_root) -> None:
    store = Store(store_root)
    entry = store.put("run", {"k": 1}, {"v": 1})
    record = json.loads((entry.path / "record.json").read_text())
    record["config"] = {"k": 2}
    (entry.path / "record.json").write_text(json.dumps(record))
    with pytest.raises(MimlibError, match="another configuration"):
        store.get("run", {"k": 1})
    (entry.path / "record.json").write_text("{ truncated")
    with pytest.raises(MimlibError, match="corrupt"):
        store.get("run", {"k": 1})


def test_a_keys_writer_removes_its_dead_temporaries_and_no_others(store_root) -> None:
    """Holding the key's lock proves every other writer of that key is gone, on any host;
    a temporary folder of another key may be a live writer elsewhere and is left alone."""
    store = Store(store_root)
    key, other = store.path("run", {"k": 1}).name, store.path("run", {"k": 2}).name
    dead = [store_root / "run" / f".tmp-{key}-node-a-4242-x1",  # killed on some host
            store_root / "run" / f".tmp-999999999-{key}-y2"]  # the former naming
    alive = store_root / "run" / f".tmp-{other}-node-b-77-z3"
    for folder in (*dead, alive):
        folder.mkdir(parents=True)
        (folder / "model.pt").write_bytes(b"half written")
    store.put("run", {"k": 1}, {"v": 1})
    assert not any(folder.exists() for folder in dead)
    assert (alive / "model.pt").read_bytes() == b"half written"
    assert sorted(p.name for p in (store_root / "run").iterdir()) == [alive.name, key]


_OTHER_HOST = """
import os, socket, sys, time
from pathlib import Path

# a job on another host (or in another PID namespace): its PID names no process here
os.getpid = lambda: 999999999
socket.gethostname = lambda: "node-b"
from mimlib.companion.results.store import Store

root, signal = Path(sys.argv[1]), Path(sys.argv[2])

def save_weights(path):
    signal.write_text("writing")  # its temporary folder exists now
    while not (signal.parent / "go").exists():
        time.sleep(0.05)
    path.write_bytes(b"hours of training")

entry = Store(root).get_or_compute("finetune", {"run": "A"},
                                   lambda: ({"v": 1}, None, {"model.pt": save_weights}))
print(entry.file("model.pt").read_bytes().decode())
"""


def test_a_write_never_removes_the_work_in_progress_of_another_host(tmp_path) -> None:
    import subprocess
    import sys
    import time

    signal = tmp_path / "signal"
    writer = subprocess.Popen([sys.executable, "-c", _OTHER_HOST, str(tmp_path / "store"),
                               str(signal)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    for _ in range(600):
        if signal.exists() or writer.poll() is not None:
            break
        time.sleep(0.05)
    assert signal.exists(), writer.communicate()
    in_progress = list((tmp_path / "store" / "finetune").glob(".tmp-*"))
    assert len(in_progress) == 1
    Store(tmp_path / "store").put("finetune", {"run": "B"}, {"v": 2})  # this host's job
    assert in_progress[0].is_dir()
    (tmp_path / "go").touch()
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert out.strip() == "hours of training"
    entries = Store(tmp_path / "store").entries("finetune")
    assert sorted(e.record["result"]["v"] for e in entries) == [1, 2]


def test_a_folder_without_its_record_is_computed_once_and_replaced(store_root) -> None:
    """A folder at an entry's place without record.json (a partial copy) is no entry: the next
    computation replaces it, says so, and later runs read the new entry."""
    store = Store(store_root)
    broken = store.path("run", {"k": 1})
    broken.mkdir(parents=True)
    (broken / "scores.npz").write_bytes(b"part of a copy")
    calls = []

    def compute():
        calls.append(1)
        return {"v": 7}, {"s": np.arange(3.0)}, None

    with pytest.warns(RuntimeWarning, match="had no record.json"):
        entry = store.get_or_compute("run", {"k": 1}, compute)
    assert entry.path == broken and entry.record["result"] == {"v": 7}
    assert entry.arrays()["s"].tolist() == [0.0, 1.0, 2.0]
    assert store.get_or_compute("run", {"k": 1}, compute).record["result"] == {"v": 7}
    assert len(calls) == 1
    assert sorted(p.name for p in (store_root / "run").iterdir()) == [broken.name]


def test_listing_skips_temporary_folders_and_names_a_damaged_record(store_root) -> None:
    store = Store(store_root)
    entry = store.put("run", {"k": 1}, {"v": 1})
    half = store_root / "run" / f".tmp-{store.path('run', {'k': 2}).name}-node-a-5-x"
    half.mkdir()
    (half / "record.json").write_text('{"config": {"k"')  # a writer killed mid-record
    assert [e.path for e in store.entries()] == [entry.path]
    assert [e.path for e in store.entries("run")] == [entry.path]
    (entry.path / "record.json").write_text('{"config": {"k"')
    with pytest.raises(MimlibError, match=f"{entry.path} has a corrupt record.json"):
        store.entries()


def test_a_record_holding_null_is_named_with_how_to_restore_it(store_root) -> None:
    store = Store(store_root)
    entry = store.put("run", {"k": 1}, {"v": 1})
    (entry.path / "record.json").write_text("null")
    for read in (lambda: store.get("run", {"k": 1}), store.entries):
        with pytest.raises(MimlibError, match="holds no record") as err:
            read()
        assert f"git checkout -- {entry.path}" in str(err.value)


@pytest.mark.parametrize("damage", ["deleted", "truncated", "garbage", "bad member"])
def test_a_damaged_scores_file_is_named(store_root, damage) -> None:
    store = Store(store_root)
    entry = store.put("scores", {"k": 1}, {"v": 1}, {"id": np.linspace(0, 1, 5000)})
    path = entry.file("scores.npz")
    data = path.read_bytes()
    if damage == "deleted":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not an npz file" * 100)
    else:  # the archive's directory intact, the compressed array bytes changed
        path.write_bytes(data[:200] + bytes(b ^ 0xFF for b in data[200:1000]) + data[1000:])
    with pytest.raises(MimlibError, match="scores.npz") as err:
        store.get("scores", {"k": 1}).arrays()
    assert str(entry.path) in str(err.value) and "git checkout --" in str(err.value)


def test_a_file_computed_again_goes_beside_the_entry_once(store_root) -> None:
    """What an entry does not keep (weights) is computed again into ROOT/.recomputed, once;
    the entry is never touched, and a failed computation leaves nothing."""
    store = Store(store_root)
    entry = store.put("finetune", {"k": 1}, {"v": 1})
    before = {p.name: p.read_bytes() for p in entry.path.iterdir()}
    calls = []

    def write(path):
        calls.append(path)
        path.write_bytes(b"weights")

    first = store.recomputed("finetune", {"k": 1}, "model.pt", write)
    assert store.recomputed("finetune", {"k": 1}, "model.pt", write) == first
    assert first == store_root / ".recomputed" / "finetune" / entry.path.name / "model.pt"
    assert first.read_bytes() == b"weights" and len(calls) == 1
    assert {p.name: p.read_bytes() for p in entry.path.iterdir()} == before

    def fails(path):
        path.write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.recomputed("finetune", {"k": 2}, "model.pt", fails)
    assert [p for p in (store_root / ".recomputed").rglob("*") if p.is_file()] == [first]
    assert [e.path for e in store.entries()] == [entry.path]  # not an entry


_WORKER = """
import os, sys, time
from mimlib.companion.results.store import Store

root, log, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])

def compute():
    with open(log, "a") as fh:
        fh.write(f"start {os.getpid()}\\n")
    time.sleep(delay)
    with open(log, "a") as fh:
        fh.write(f"done {os.getpid()}\\n")
    return {"pid": os.getpid()}, None, None

entry = Store(root).get_or_compute("shared", {"key": 1}, compute)
print(entry.record["result"]["pid"])
"""


def _worker(tmp_path, delay: float):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path / "store"),
                             str(tmp_path / "log"), str(delay)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)


def test_two_processes_asking_for_one_key_compute_it_once(tmp_path) -> None:
    first, second = _worker(tmp_path, 2.0), _worker(tmp_path, 2.0)
    results = [p.communicate(timeout=120)[0].strip() for p in (first, second)]
    assert first.returncode == second.returncode == 0
    lines = (tmp_path / "log").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["start", "done"]  # one computation
    assert results[0] == results[1] == lines[0].split()[1]  # both got that one entry


def test_a_worker_killed_while_holding_the_lock_blocks_nobody(tmp_path) -> None:
    import os
    import signal
    import time

    holder = _worker(tmp_path, 60.0)
    for _ in range(200):  # until it is computing (and so holds the lock)
        if (tmp_path / "log").exists():
            break
        time.sleep(0.05)
    waiter = _worker(tmp_path, 0.1)
    time.sleep(1.0)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    out = waiter.communicate(timeout=120)[0].strip()
    assert waiter.returncode == 0 and out == str(waiter.pid)  # the next job computed it
    lines = (tmp_path / "log").read_text().splitlines()
    assert lines == [f"start {holder.pid}", f"start {waiter.pid}", f"done {waiter.pid}"]
    store = Store(tmp_path / "store")
    assert [e.record["result"]["pid"] for e in store.entries()] == [waiter.pid]
    assert not list((tmp_path / "store" / "shared").glob(".tmp-*"))  # nothing half written
