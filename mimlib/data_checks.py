"""Checks before work: whether a data set named by a spec can be had (paths, archives, downloaded files) and its number of classes, without reading an image."""

from __future__ import annotations

from . import fetch, pins, synthetic
from .errors import DataError
from .fetch import IMAGE_SUFFIXES
from .specs import (OPENOOD_ID, DataSpec)
from .data import MNIST_FILES, DataOptions


def check_available(spec: str | DataSpec, options: DataOptions = DataOptions(), *,
                    role: str = "ood") -> None:
    """Fail fast, before any work, when a data set named by ``spec`` cannot be had.

    Paths must exist (an ID folder with train/ and test/, an OOD folder with images); with
    downloads off, torchvision and pytorch-ood sets must already be in ``options.root``. Reading
    and decoding are left to the load itself.
    """
    spec = DataSpec.parse(spec, role)
    pins.verify(spec)
    path = spec.source_path
    if spec.kind == "mnist":
        if not path.is_file():  # type: ignore[union-attr]  # files: a path
            raise DataError(f"{path} (in {spec.text!r}) does not exist; 'mnist:PATH' needs the "
                            f"original MNIST test files {' and '.join(MNIST_FILES)}")
        return
    if path is not None:
        if not path.exists():
            raise DataError(f"{path} (in {spec.text!r}) does not exist; give an existing folder "
                            "or .tar/.tar.gz/.tar.xz archive")
        if path.is_dir():
            if role == "id" and not all((path / s).is_dir() for s in ("train", "test")):
                raise DataError(f"{path} needs train/<class>/ and test/<class>/ folders")
            if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*")):
                raise DataError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return
    if not options.download:  # with downloads on, a run fetches them before its work
        fetch.ensure(fetch.data_items(spec.where, options.root), download=False)


def known_num_classes(spec: str | DataSpec) -> int | None:
    """The number of classes of an ID set when it is known without reading images."""
    spec = DataSpec.parse(spec, "id")
    if spec.kind == "set":
        return {"cifar10": 10, "cifar100": 100, "synthetic": len(synthetic.ID_CLASSES),
                OPENOOD_ID: 10}[spec.where]
    if spec.path is not None:
        train = spec.path / "train"
        if train.is_dir():  # the class folders that hold images, as the loader counts them
            return sum(1 for p in train.iterdir() if p.is_dir() and any(
                f.suffix.lower() in IMAGE_SUFFIXES for f in p.rglob("*")))
    return None
