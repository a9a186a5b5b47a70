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
