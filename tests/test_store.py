import json

import numpy as np
import pytest

from mimlib.errors import MimlibError
from mimlib.store import Store, config_key


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


def test_temporary_folders_of_dead_writers_are_removed(store_root) -> None:
    store = Store(store_root)
    stale = store_root / "run" / ".tmp-999999999-abc-xyz"
    stale.mkdir(parents=True)
    store.put("run", {"k": 1}, {"v": 1})
    assert not stale.exists()


_WORKER = """
import os, sys, time
from mimlib.store import Store

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
