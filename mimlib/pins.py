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

from .errors import ConfigError, DataError
from .fetch import file_digest

PIN = "#sha256="
PATH_KINDS = ("folder:", "crop:", "resize:", "mnist:")
#: What names ``mnist:FOLDER``: its image file (the labels are not used for an OOD set)
MNIST_IMAGES = "t10k-images-idx3-ubyte.gz"


def split_pin(spec: str) -> tuple[str, str | None]:
    """``(spec without its pin, pin or None)``."""
    base, sep, pin = spec.partition(PIN)
    if not sep:
        return spec, None
    pin = pin.strip().lower()
    if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
        raise ConfigError(f"{spec!r}: a pin is '#sha256=' and 64 hex digits, got {pin!r}")
    return base, pin


def source_path(spec: str) -> Path | None:
    """The file or folder a spec reads (``NAME=`` prefix and pin removed), or None."""
    target = split_pin(spec)[0]
    target = target.partition("=")[2] if "=" in target.split(":", 1)[0] else target
    for kind in PATH_KINDS:
        if target.startswith(kind):
            path = Path(target[len(kind):]).expanduser()
            return path / MNIST_IMAGES if kind == "mnist:" else path
    return None


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


def verify(spec: str) -> None:
    """A pinned source's files have the pinned checksum, else DataError saying what to do."""
    _, pin = split_pin(spec)
    path = source_path(spec)
    if pin is None or path is None:
        return
    if not path.exists():
        raise DataError(
            f"{path} is absent. Results stored for these data (pinned by SHA-256 {pin}) are "
            "read without them, but this step computes something new and needs the data: "
            "put the pinned copy at that path (see the README's real-data section)")
    actual = source_digest(path)
    if actual != pin:
        raise DataError(
            f"{path} has SHA-256 {actual}, but {spec!r} pins {pin}: these are other bytes than "
            "the pinned results were computed on (a partial or re-encoded copy?). Get the "
            "pinned copy, or remove the '#sha256=...' pin to compute under this copy's own "
            "checksum")


def identity(spec: str) -> str:
    """What names a data source in store keys: the spec with its path replaced by a checksum."""
    base, pin = split_pin(spec)
    path = source_path(spec)
    if path is None:
        if pin is not None:
            raise ConfigError(f"{spec!r}: only specs that read files ({', '.join(PATH_KINDS)}) "
                              "take a pin")
        return base
    digest = pin or source_digest(path)
    return f"{base[: base.index(':') + 1]}sha256:{digest}"  # 'NAME=kind:' kept, path dropped


def display(spec: str) -> str:
    """A short human name for a spec: file name instead of path, the pin's first 8 digits."""
    base, pin = split_pin(spec)
    path = source_path(spec)
    if path is not None:
        name = path.parent.name if path.name == MNIST_IMAGES else path.name
        base = f"{base[: base.index(':') + 1]}{name}"
    return f"{base}@{pin[:8]}" if pin else base
