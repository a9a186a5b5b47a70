"""Which executed pages are up to date: fingerprints and the manifest.

A notebook's fingerprint hashes its template, its parameters and mimlib's own code; the
manifest (``book/executed/manifest.json``) remembers the fingerprint and status of each page's
last run, so an unchanged page is skipped unless forced. Several runs may finish chapters at once
(two terminals, jobs): each records its chapter under the manifest's lock, in the manifest as it
is then (:func:`record_run`), so no run writes back a stale copy of another's record.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..book.pages import EXECUTED, NOTEBOOKS
from ..results.store import canonical_json

MANIFEST = EXECUTED / "manifest.json"
MANIFEST_LOCK = EXECUTED / "manifest.lock"


def mimlib_fingerprint() -> str:
    """A hash of mimlib's own code and profiles: results of a changed library are stale."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parents[2]  # mimlib/, not only its companion
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".yml", ".csv") and "__pycache__" not in path.parts:
            h.update(path.relative_to(package).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def fingerprint(root: Path, name: str, params: dict[str, Any]) -> str:
    """A notebook run's fingerprint: its template, its parameters and mimlib's code."""
    h = hashlib.sha256()
    h.update((root / NOTEBOOKS / f"{name}.ipynb").read_bytes())
    h.update(canonical_json(params).encode())
    h.update(mimlib_fingerprint().encode())
    return h.hexdigest()


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of the executed pages, {} when there is none (or it is damaged)."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a damaged manifest only costs re-running notebooks


def record_run(root: Path, name: str, record: dict[str, Any]) -> None:
    """Set notebook ``name``'s record in the manifest: read, changed and replaced (atomically)
    under the manifest's lock, which also proves that every temporary manifest left there is
    a dead writer's (removed)."""
    from filelock import FileLock

    path = root / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / MANIFEST_LOCK)):
        manifest = read_manifest(root)
        manifest[name] = record
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp, path)
