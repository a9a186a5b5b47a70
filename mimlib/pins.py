"""Data identity for store keys: a data source is named by the SHA-256 of its files, not its path.

A spec that reads files (``folder:PATH``, ``crop:PATH``, ``resize:PATH``, ``mnist:PATH``) may
carry its expected checksum, ``folder:PATH#sha256=HEX``. The store key then holds only that
checksum, so it is known without the files (a fresh clone reads committed results) and without
decoding them, and results computed on other bytes (a partial copy, a re-encoded one) are never
re-used: the files are checked against the pin before anything is computed from them. A spec
without a pin is named by the checksum of the files as they are. Named sets (``cifar10``,
``gaussian``...) are named by their name: torchvision and pytorch-ood check their downloads.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from .errors import DataError
from .fetch import file_digest
from .specs import MNIST_IMAGES, PIN, DataSpec

__all__ = ["MNIST_IMAGES", "PIN", "verify", "is_absent", "identity", "display", "source_digest"]

def source_digest(path: Path) -> str:
    """SHA-256 of a file's bytes; of a folder, over its files' relative paths and digests."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; give an existing folder or archive")
    stamp = _stamp(path)
    return _digest(str(path.resolve()), stamp)


def _stamp(path: Path) -> str:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return ";".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


@functools.lru_cache(maxsize=64)
def _digest(resolved: str, stamp: str) -> str:  # stamp: re-hash when the files change
    path = Path(resolved)
    if path.is_file():
        return file_digest(path, "sha256")
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(path).as_posix()}\0{file_digest(p, 'sha256')}\n".encode())
    return h.hexdigest()


def verify(spec: str | DataSpec) -> None:
    """A pinned source's files have the pinned checksum, else DataError saying what to do."""
    spec = DataSpec.parse(spec)
    path = spec.source_path
    if spec.pin is None or path is None:
        return
    if not path.exists():
        raise DataError(
            f"{path} is absent. Results stored for these data (pinned by SHA-256 {spec.pin}) are "
            "read without them, but this step computes something new and needs the data: "
            "put the pinned copy at that path (see the README's real-data section)")
    actual = source_digest(path)
    if actual != spec.pin:
        raise DataError(
            f"{path} has SHA-256 {actual}, but {spec.text!r} pins {spec.pin}: these are other "
            "bytes than the pinned results were computed on (a partial or re-encoded copy?). Get "
            "the pinned copy, or remove the '#sha256=...' pin to compute under this copy's own "
            "checksum")


def is_absent(spec: str | DataSpec) -> bool:
    """Whether a pinned source's files are absent (its stored results are read without them)."""
    spec = DataSpec.parse(spec)
    return spec.pin is not None and not spec.source_path.exists()  # type: ignore[union-attr]


def identity(spec: str | DataSpec) -> str:
    """What names a data source in store keys: the spec with its path replaced by a checksum."""
    spec = DataSpec.parse(spec)
    if spec.source_path is None:
        return spec.named(spec.target)
    return spec.named(f"{spec.kind}:sha256:{spec.pin or source_digest(spec.source_path)}")


def display(spec: str | DataSpec) -> str:
    """A short human name for a spec: file name instead of path, the pin's first 8 digits."""
    spec = DataSpec.parse(spec)
    short = spec.named(f"{spec.kind}:{spec.file_name}" if spec.reads_files else spec.target)
    return f"{short}@{spec.pin[:8]}" if spec.pin else short
