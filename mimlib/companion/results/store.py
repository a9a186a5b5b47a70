"""The results store: every finished computation, keyed by a hash of its configuration.

Layout: ``ROOT/<kind>/<key>/`` holds ``record.json`` (configuration, metrics, library versions,
git revision, data checksums, timing) and any artefacts (``scores.npz``, ``model.pt``,
``log.json``...). An entry is written into a hidden temporary folder and renamed into place in
one atomic step, so a killed process leaves either a complete entry or none (plus a stale
temporary folder that the next write of that key removes). A forced recompute puts its entry in
place of the stored one without a moment where neither exists: the stored entry is renamed
aside (``.replaced-KEY``, where readers look while the key's folder is absent), the new one is
renamed into place, then the old one is removed; the key's next writer finishes a replacement
killed half-way. Every write of a key holds that key's
lock (:meth:`Store.lock`), and only a writer holding it judges which temporary folders of the key
are stale, so jobs on several hosts can share one store. A committed entry is never changed:
files computed again for it (the weights of a run whose entry keeps none) go to
``ROOT/.recomputed``. Re-running with the same configuration finds the entry and skips the work.
``ROOT/.usage/NOTEBOOK.json`` lists the entries each chapter's last run with its profile's own
parameters used (what a chapter costs is the wall time of those entries).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ...errors import StoreError
from .provenance import environment

RECORD = "record.json"
LOCKS = ".locks"  # one lock file per key being computed (see Store.lock)
USAGE = ".usage"  # per notebook: the entries its last successful run used (Store.record_usage)
USAGE_ENV = "MIMLIB_USAGE"  # a file every store read appends to while it is set
RECOMPUTED = ".recomputed"  # files computed again for entries that do not keep them
ASIDE = ".replaced-"  # prefix of an entry moved aside while a forced recompute replaces it
#: what every reader of a record takes from it (put writes each)
RECORD_FIELDS = ("config", "result", "provenance", "environment")
#: a store's own writes failing so means it cannot be written here (read-only mount, modes)
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


class _Held(threading.local):
    """The lock files this thread holds (:meth:`Store.lock` is re-entrant)."""

    def __init__(self) -> None:
        self.paths: set[str] = set()


_HELD = _Held()


def default_root() -> Path:
    """``$MIMLIB_RESULTS``, else ``results/store`` under the current directory."""
    return Path(os.environ.get("MIMLIB_RESULTS", "results/store"))


def canonical_json(obj: Any) -> str:
    """Stable JSON (sorted keys, no whitespace): equal configurations give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def config_key(kind: str, config: dict[str, Any]) -> str:
    """The first 16 hex digits of the SHA-256 of the kind and canonical configuration."""
    return hashlib.sha256(f"{kind}\n{canonical_json(config)}".encode()).hexdigest()[:16]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


@dataclass
class Entry:
    """A finished entry: its folder and its record."""

    path: Path
    record: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name

    def arrays(self, name: str = "scores.npz") -> dict[str, np.ndarray]:
        try:
            with np.load(self.path / name, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise StoreError(_damaged(self.path, f"has a missing or damaged {name} "
                                                  f"({type(err).__name__}: {err})")) from err

    def json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError) as err:
            raise StoreError(_damaged(self.path, f"has a missing or damaged {name} "
                                                  f"({type(err).__name__}: {err})")) from err


class Store:
    """A folder of finished results, keyed by (kind, configuration)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def path(self, kind: str, config: dict[str, Any]) -> Path:
        return self.root / kind / config_key(kind, config)

    def get(self, kind: str, config: dict[str, Any]) -> Entry | None:
        """The finished entry for this configuration, or None. Checks the stored configuration."""
        entry = _find(self.path(kind, config))
        if entry is None:
            return None
        if canonical_json(entry.record["config"]) != canonical_json(config):
            raise StoreError(_damaged(entry.path, "holds another configuration than its key says"))
        self._note_use(kind, self.path(kind, config).name)
        return entry

    def _note_use(self, kind: str, key: str) -> None:
        """Append this entry to ``$MIMLIB_USAGE`` when it is set (by
        :func:`mimlib.companion.run.papermill_run.execute_notebook`, per notebook run): which stored results a
        chapter used, the basis of what each chapter costs (:func:`usage`)."""
        target = os.environ.get(USAGE_ENV)
        if target:
            with open(target, "a") as f:
                f.write(json.dumps({"store": str(self.root.resolve()), "kind": kind,
                                    "key": key}) + "\n")

    def record_usage(self, notebook: str, entries: Iterable[str]) -> None:
        """Store which entries (``kind/key``) a notebook's run used, replacing its last record
        (``ROOT/.usage/NOTEBOOK.json``, written atomically; an unchanged record is not
        written, so a read-only store that holds it already is fine)."""
        final = self.root / USAGE / f"{notebook}.json"
        text = json.dumps({"notebook": notebook, "entries": sorted(set(entries))},
                          indent=1) + "\n"
        if final.is_file() and final.read_text() == text:
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{notebook}.{writer_id()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, final)

    def usage(self) -> dict[str, list[str]]:
        """The entries (``kind/key``) each recorded notebook used, by notebook name."""
        return {path.stem: json.loads(path.read_text())["entries"]
                for path in sorted((self.root / USAGE).glob("*.json"))}

    @contextlib.contextmanager
    def writer(self, kind: str, config: dict[str, Any], *,
               replace: bool = False) -> Iterator[Path]:
        """A temporary folder to write artefacts into; committed atomically on success only.

        The whole write holds the key's lock, so the temporary folders of this key that it
        finds belong to writers that died (on any host): it removes them, and finishes a
        replacement that one of them left half done. Folders of other keys are left to their
        own key's next writer. A folder at the entry's place without a record (a partial copy)
        is no entry: it is replaced, with a warning. A stored entry is kept (another process
        finished first) unless ``replace``: then the new one takes its place (:func:`_swap`).
        """
        final = self.path(kind, config)
        with self.lock(kind, config):
            with self._writable(kind, config):
                final.parent.mkdir(parents=True, exist_ok=True)
                _settle(final)
                _remove_temporaries(final.parent, final.name)
                tmp = Path(tempfile.mkdtemp(dir=final.parent,
                                            prefix=f".tmp-{final.name}-{writer_id()}-"))
            try:
                yield tmp
                if not (tmp / RECORD).is_file():
                    raise StoreError("a store entry must write its record before it is "
                                     "committed")
                _fsync_tree(tmp)
                if (final / RECORD).is_file():
                    if replace:
                        _swap(tmp, final)
                    else:  # another process finished first: keep its entry
                        shutil.rmtree(tmp)
                    return
                if final.exists():
                    warnings.warn(f"store folder {final} had no {RECORD} (a partial copy?); "
                                  "replaced by the entry just computed", RuntimeWarning,
                                  stacklevel=3)
                    _remove(final, final.name)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

    def put(self, kind: str, config: dict[str, Any], result: dict[str, Any],
            arrays: dict[str, np.ndarray] | None = None,
            files: dict[str, Callable[[Path], None]] | None = None,
            provenance: dict[str, Any] | None = None, *, replace: bool = False) -> Entry:
        """Write one entry: the record (config + result + environment) and optional artefacts.

        ``files`` maps a file name to a function that writes that file at the given path. A
        stored entry of the key stays, unless ``replace`` (see :meth:`writer`).
        """
        with self.writer(kind, config, replace=replace) as tmp:
            if arrays:
                np.savez_compressed(tmp / "scores.npz", **arrays)
            for name, write in (files or {}).items():
                write(tmp / name)
            record = {"kind": kind, "key": config_key(kind, config), "config": config,
                      "result": result, "provenance": provenance or {},
                      "environment": environment(), "created": time.strftime(
                          "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (tmp / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True,
                                                 default=_json_default))
        entry = self.get(kind, config)
        if entry is None:
            raise StoreError(f"store entry {self.path(kind, config)} vanished right after it "
                              "was written; is another program deleting files in the store?")
        return entry

    def get_or_compute(self, kind: str, config: dict[str, Any],
                       compute: Callable[[], tuple[dict[str, Any], dict[str, np.ndarray] | None,
                                                   dict[str, Callable[[Path], None]] | None]],
                       *, force: bool = False,
                       provenance: dict[str, Any] | Callable[[], dict[str, Any]] | None = None
                       ) -> Entry:
        """The stored entry, or compute (result, arrays, files) and store it first; ``force``
        replaces a stored entry once the new one is written in full (a failed computation or
        write, or a killed process, leaves the stored one; see :meth:`writer`). A callable
        ``provenance`` is called only when something is computed (it may read the data)."""
        entry = None if force else self.get(kind, config)
        if entry is not None:
            return entry
        with self.lock(kind, config):
            # another process may have computed it while this one waited for the lock
            entry = None if force else self.get(kind, config)
            if entry is not None:
                return entry
            result, arrays, files = compute()
            if callable(provenance):
                provenance = provenance()
            return self.put(kind, config, result, arrays, files, provenance, replace=force)

    @contextlib.contextmanager
    def lock(self, kind: str, config: dict[str, Any]) -> Iterator[None]:
        """One computation per key at a time, for every process that shares this store (jobs
        on one machine or on a cluster's shared file system): filelock's ``flock``, which the
        kernel releases when its holder dies, so a killed job never blocks the others; on NFS,
        Linux maps it to NFS byte-range locks. Re-entrant within a thread. The lock files stay
        in ``ROOT/.locks``; a store that cannot be written stops here, before any work
        (:meth:`_writable`)."""
        from filelock import FileLock

        path = self.root / LOCKS / f"{kind}-{config_key(kind, config)}.lock"
        name = os.path.abspath(path)
        if name in _HELD.paths:
            yield
            return
        lock = FileLock(str(path))
        with self._writable(kind, config):
            path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        try:
            _HELD.paths.add(name)
            yield
        finally:
            _HELD.paths.discard(name)
            lock.release()

    @contextlib.contextmanager
    def _writable(self, kind: str, config: dict[str, Any]) -> Iterator[None]:
        """The store's own writes (locks, folders; not a computation's): a store that refuses
        them (a read-only mount of shared results, no permission) is named with where new
        results can go, instead of a raw OSError."""
        try:
            yield
        except OSError as err:
            if err.errno not in UNWRITABLE:
                raise
            raise StoreError(
                f"the results store {self.root} cannot be written ({err.strerror}: "
                f"{err.filename}): its entries are read, but {kind}/{config_key(kind, config)} "
                "is not among them and has to be computed and stored. Point new results at a "
                "writable folder: `-p store PATH` for a chapter (a profile's `store:`), "
                "MIMLIB_RESULTS=PATH where no store is given, Store(PATH) in Python; or copy "
                "this store somewhere writable and point there") from err

    def recomputed(self, kind: str, config: dict[str, Any], name: str,
                   write: Callable[[Path], None]) -> Path:
        """A file that the entry of (kind, config) does not keep, computed again (``write(path)``
        writes it) once across jobs, under the key's lock, into
        ``ROOT/.recomputed/KIND/KEY/NAME``: the committed entry itself is never changed."""
        final = self.root / RECOMPUTED / kind / config_key(kind, config) / name
        with self.lock(kind, config):
            if not final.is_file():
                with self._writable(kind, config):
                    final.parent.mkdir(parents=True, exist_ok=True)
                tmp = final.with_name(f".{name}.{writer_id()}.tmp")
                try:
                    write(tmp)
                    os.replace(tmp, final)
                finally:
                    tmp.unlink(missing_ok=True)
        return final

    def entries(self, kind: str | None = None) -> list[Entry]:
        """Every finished entry (of one kind), oldest first; temporary folders are no entries,
        an entry moved aside by a forced recompute is one while its key's folder is absent."""
        kinds = [self.root / kind] if kind else sorted(
            p for p in self.root.glob("*") if p.is_dir() and not p.name.startswith("."))
        found = []
        for folder in kinds:
            names = {path.parent.name for path in folder.glob("*/" + RECORD)}
            keys = sorted({name.removeprefix(ASIDE) for name in names
                           if name.startswith(ASIDE) or not name.startswith(".")})
            found += [entry for entry in map(_find, (folder / key for key in keys)) if entry]
        return sorted(found, key=lambda e: e.record.get("created", ""))


def _damaged(path: Path, what: str) -> str:
    """What to do about a damaged entry: restore it if committed, else recompute it."""
    return (f"store entry {path} {what}. If it is committed, restore it with `git checkout -- "
            f"{path}`; otherwise delete the folder and re-run to recompute it")


def _find(final: Path) -> Entry | None:
    """The entry of the key folder ``final``, or None: at its place, else moved aside by a
    forced recompute (being replaced now, or by a writer killed half-way), else at its place
    again (the replacement finished meanwhile)."""
    for path in (final, _aside(final), final):
        entry = _read_entry(path)
        if entry is not None:
            return entry
    return None


def _read_entry(path: Path) -> Entry | None:
    """The entry in ``path`` (None without a record), its record checked to be a whole
    record (StoreError naming it)."""
    try:
        record = json.loads((path / RECORD).read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as err:
        raise StoreError(_damaged(path, f"has a corrupt {RECORD} ({err})")) from err
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise StoreError(_damaged(path, f"has a {RECORD} that holds no record "
                                        f"({canonical_json(record)[:60]})"))
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        raise StoreError(_damaged(path, f"has a {RECORD} without its {', '.join(missing)}"))
    return Entry(path, record)


def _aside(final: Path) -> Path:
    """Where a forced recompute moves the entry ``final`` while it puts the new one in place."""
    return final.with_name(ASIDE + final.name)


def _swap(new: Path, final: Path) -> None:
    """Put the complete entry ``new`` in place of the stored entry ``final``; one of the two
    is findable at every moment (:func:`_find`). Call holding the key's lock."""
    aside = _aside(final)
    os.replace(final, aside)
    try:
        os.replace(new, final)
    except BaseException:
        os.replace(aside, final)
        raise
    _remove(aside, final.name)


def _settle(final: Path) -> None:
    """Finish a replacement (:func:`_swap`) whose writer was killed: the new entry in place
    means the old one goes, else the old one is put back. Call holding the key's lock."""
    aside = _aside(final)
    if not aside.exists():
        return
    if (final / RECORD).is_file():
        _remove(aside, final.name)
    else:
        os.replace(aside, final)


def writer_id() -> str:
    """Host and process of a writer, in the names of its temporary files (for people
    reading the store: what is stale is decided by the key's lock, not by these)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _remove_temporaries(folder: Path, key: str) -> None:
    """Remove the temporary folders of ``key`` in ``folder``; call only holding key's lock."""
    for tmp in folder.glob(".tmp-*"):
        if key in tmp.name.split("-"):
            shutil.rmtree(tmp, ignore_errors=True)


def _remove(path: Path, key: str) -> None:
    """Remove an entry folder: first renamed out of place (atomic), then deleted."""
    trash = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{key}-{writer_id()}-"))
    os.replace(path, trash / "deleted")
    shutil.rmtree(trash, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
