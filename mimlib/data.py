"""Data sets as uint8 tensors in memory: ID sets, OOD sets, noise sets and the embedded default.

Every set is an :class:`ImageSet`: images (N, 3, 32, 32) uint8 and labels (N,) int64, with -1
for OOD samples. Keeping the raw bytes (not normalised floats) makes a set small enough to live
on the GPU and makes its checksum a property of the pixels, so stored results can name the exact
data they came from.

Sources are named by short strings, so a configuration is plain data:

* ID sets: ``cifar10``, ``cifar100`` (torchvision), ``synthetic`` (embedded, no files) and
  ``folder:PATH``, an ImageFolder layout with ``train/<class>/`` and ``test/<class>/`` inside a
  folder or a ``.tar``/``.tar.gz``/``.tar.xz`` archive (the offline CIFAR-10 JPEGs, users' data).
* OOD sets: the paper's seven (``tinyimagenet_crop``, ``tinyimagenet_resize``, ``lsun_crop``,
  ``lsun_resize``, ``svhn``, ``textures``, ``places365``) through pytorch-ood / torchvision with
  their checksums; the OE paper's noise sets ``gaussian``, ``rademacher``, ``blobs``; the embedded
  ``synthetic_shapes``, ``synthetic_textures``, ``synthetic_scenes``; and any folder or archive
  of images as ``crop:PATH`` or ``resize:PATH`` (a random 32x32 crop or a downscale of each
  image, the two ODIN recipes), optionally named ``NAME=crop:PATH``; and the MNIST test digits,
  ``mnist`` (torchvision) or ``mnist:PATH`` (a folder with the original ``t10k-*.gz`` files),
  grey to RGB and resized from 28x28 to 32x32 (bilinear).

Image files of every Pillow mode become 8-bit RGB by :func:`mimlib.pixels.rgb8` (16-bit and
float images scaled from their range, not clipped), or a DataError naming the file and mode.

Specs that read files may pin their checksum (``folder:PATH#sha256=HEX``, see :mod:`.pins`):
the files are verified before they are read, and store keys name the data by the pin.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from . import fetch, pins, synthetic
from .checks import flag, whole
from .errors import ConfigError, DataError
from .fetch import IMAGE_SUFFIXES
from .images import ImageSet
from .noise import noise_images
from .pixels import rgb8
from .specs import (AUXILIARY_SETS, MNIST_IMAGES, NOISE_SETS, OPENOOD_ID, OPENOOD_OOD_SETS,
                    SYNTHETIC_OOD_SETS, DataSpec)

SYNTHETIC_SIZES = {"train": 6000, "test": 1200, "ood": 1200}
NOISE_SIZE = 2000


@dataclass(frozen=True)
class DataOptions:
    """Where data lives and whether it may be downloaded."""

    root: str = os.environ.get("MIMLIB_DATA", str(Path.home() / ".cache" / "mimlib" / "data"))
    download: bool = True

    def __post_init__(self) -> None:
        flag(self.download, "download")


# --------------------------------------------------------------------------- ID sets

def load_id(spec: str | DataSpec, split: str, options: DataOptions = DataOptions()) -> ImageSet:
    """The train or test split of an ID set named by ``spec`` (see the module docstring)."""
    spec = DataSpec.parse(spec, "id")
    pins.verify(spec)
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    if spec.kind == "folder":
        return _image_folder(spec.path, split)  # type: ignore[arg-type]  # files: a path
    name = spec.where
    if name == "synthetic":
        def draw() -> ImageSet:
            images, labels = synthetic.make_id(SYNTHETIC_SIZES[split],
                                               seed=0 if split == "train" else 1)
            return ImageSet(f"synthetic/{split}", torch.from_numpy(images),
                            torch.from_numpy(labels), synthetic.ID_CLASSES,
                            "mimlib.synthetic (embedded, seeded)")
        return _cached(_synthetic_cache_file("id", split), draw)
    if name == OPENOOD_ID:
        return _openood(name, split, options)
    return _torchvision_cifar(name, split, options)


def _torchvision_cifar(name: str, split: str, options: DataOptions) -> ImageSet:
    from torchvision import datasets

    fetch.ensure(fetch.data_items(name, options.root), download=options.download)
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    ds = cls(str(Path(options.root) / name), train=split == "train", download=False)
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return ImageSet(f"{name}/{split}", images, torch.as_tensor(ds.targets, dtype=torch.int64),
                    tuple(ds.classes), f"torchvision.datasets.{cls.__name__} (md5-checked)")


class _Source:
    """Uniform access to the image files of a folder or of a tar archive."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise DataError(f"{path} does not exist; give an existing folder or .tar/.tar.xz")
        self.path = path
        self.tar = None
        if path.is_file():
            try:
                self.tar = tarfile.open(path)
            except (tarfile.TarError, OSError) as err:
                raise DataError(f"{path} is neither a folder nor a readable tar archive") from err
            self.members = {m.name.lstrip("./"): m for m in self.tar.getmembers() if m.isfile()}
            self.names = sorted(self.members)
        else:
            self.names = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())

    def read(self, name: str) -> bytes:
        if self.tar is not None:
            return self.tar.extractfile(self.members[name]).read()
        return (self.path / name).read_bytes()

    def images_under(self, prefix: str) -> list[str]:
        return [n for n in self.names if n.startswith(prefix)
                and n.lower().endswith(IMAGE_SUFFIXES)]


def _decode(data: bytes, name: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{name} is not a readable image ({err}); remove it from the folder") from err
    return rgb8(img, name)


def _cache_file(kind: str, path: Path, *extra: object) -> Path:
    """Where decoded pixels of a folder or archive are cached: keyed by its files' sizes and
    modification times, so that a changed folder is decoded again."""
    if path.is_file():
        stamp = f"{path.stat().st_size}:{path.stat().st_mtime_ns}"
    else:
        stamp = ";".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                         for p in sorted(path.rglob("*")) if p.is_file())
    # v2: wide modes (16-bit, I, F) are scaled by mimlib.pixels; v1 caches clipped them
    digest = hashlib.sha256(f"{kind}|{path.resolve()}|{extra}|{stamp}|v2".encode()).hexdigest()
    return _cache_root() / f"{digest[:24]}.npz"


def _synthetic_cache_file(*key: object) -> Path:
    """Cache of drawn synthetic sets, keyed by the drawing code itself."""
    code = Path(synthetic.__file__).read_bytes()
    digest = hashlib.sha256(code + repr((key, SYNTHETIC_SIZES)).encode()).hexdigest()
    return _cache_root() / f"synthetic-{digest[:24]}.npz"


def _cache_root() -> Path:
    return Path(os.environ.get("MIMLIB_CACHE", Path.home() / ".cache" / "mimlib" / "decoded"))


def _cached(cache: Path, build: Callable[[], ImageSet]) -> ImageSet:
    """Decoded arrays from the cache, or build the set and cache it (atomically)."""
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return ImageSet(str(z["name"]), torch.from_numpy(z["images"]),
                                torch.from_numpy(z["labels"]), tuple(z["classes"].tolist()),
                                str(z["source"]))
        except (OSError, ValueError, KeyError):
            cache.unlink(missing_ok=True)  # a damaged cache file is rebuilt
    result = build()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, name=result.name, images=result.images.numpy(), labels=result.labels.numpy(),
             classes=np.asarray(result.classes, dtype=str), source=result.source)
    os.replace(tmp, cache)
    return result


def _image_folder(path: Path, split: str) -> ImageSet:
    if not path.exists():
        raise DataError(f"{path} does not exist; give an existing folder or .tar/.tar.xz")
    # "classes checked": sets cached before train and test were compared are decoded again
    return _cached(_cache_file("id", path, split, "classes checked"),
                   lambda: _decode_image_folder(path, split))


def _decode_image_folder(path: Path, split: str) -> ImageSet:
    source = _Source(path)
    prefix, files, class_of = _split_files(source, split)
    classes = tuple(sorted(set(class_of)))
    other = "test" if split == "train" else "train"
    other_classes = set(_split_files(source, other)[2])
    if other_classes != set(classes):
        only_here = ", ".join(sorted(set(classes) - other_classes)) or "none"
        only_there = ", ".join(sorted(other_classes - set(classes))) or "none"
        raise DataError(
            f"{path}: train/ and test/ hold images of different classes (only in {split}/: "
            f"{only_here}; only in {other}/: {only_there}), so a label would mean one class "
            "in training and another in testing. Give both splits the same class folders, "
            "each holding images")
    images = np.empty((len(files), 32, 32, 3), np.uint8)
    for i, name in enumerate(files):
        img = _decode(source.read(name), name)
        if img.size != (32, 32):
            img = img.resize((32, 32), Image.BILINEAR)
        images[i] = np.asarray(img)
    labels = torch.as_tensor([classes.index(c) for c in class_of], dtype=torch.int64)
    # A fixed pseudo-random order, like CIFAR's own files: read in sorted order, an unshuffled
    # loader (the faithful protocol) would see one class at a time and wreck the model.
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(0))
    return ImageSet(f"{path.name}/{split}",
                    torch.from_numpy(images.transpose(0, 3, 1, 2).copy())[order], labels[order],
                    classes, f"image folder {path} ({split}), fixed shuffled order")


def _split_files(source: _Source, split: str) -> tuple[str, list[str], list[str]]:
    """A split's path prefix, its image files and the class (folder) of each; the classes
    are the folders that hold images, at least two."""
    prefix = _split_prefix(source, split)
    files = source.images_under(prefix)
    if not files:
        raise DataError(f"no images under {source.path}/{prefix}: an ID folder needs "
                        f"{split}/<class>/<image> files ({', '.join(IMAGE_SUFFIXES)})")
    if any("/" not in f[len(prefix):] for f in files):
        raise DataError(f"{source.path}/{prefix} has images outside class folders; use the "
                        f"layout {split}/<class>/<image>")
    class_of = [f[len(prefix):].split("/")[0] for f in files]
    if len(set(class_of)) < 2:
        raise DataError(f"{source.path}/{prefix} has {len(set(class_of))} class folder(s) "
                        "with images; need at least 2")
    return prefix, files, class_of


def _split_prefix(source: _Source, split: str) -> str:
    """The path prefix of a split inside a folder or archive (``train/`` or ``x/train/``)."""
    for name in source.names:
        parts = name.split("/")
        if split in parts[:-2]:
            return "/".join(parts[: parts.index(split) + 1]) + "/"
    raise DataError(f"{source.path} has no '{split}/' folder; an ID folder needs "
                    "train/<class>/ and test/<class>/ inside")


# --------------------------------------------------------------------------- OOD sets

def load_ood(spec: str | DataSpec, options: DataOptions = DataOptions(), *,
             seed: int = 0) -> ImageSet:
    """An OOD set named by ``spec`` (see the module docstring), all labels -1."""
    whole(seed, "seed", minimum=0)
    parsed = DataSpec.parse(spec, "ood")
    pins.verify(parsed)
    if parsed.kind == "mnist" or parsed.target == "mnist":
        return _mnist(parsed.path, options, parsed.name or "mnist")
    if parsed.kind in ("crop", "resize"):
        return _ood_folder(parsed.path, parsed.kind,  # type: ignore[arg-type]  # files: a path
                           parsed.name or f"{parsed.file_name}_{parsed.kind}", seed)
    spec = parsed.where
    if spec in SYNTHETIC_OOD_SETS or spec in AUXILIARY_SETS[1:]:
        kind = spec[len("synthetic_"):]
        return _cached(_synthetic_cache_file(kind, seed), lambda: _ood_set(
            spec, torch.from_numpy(synthetic.make_ood(kind, SYNTHETIC_SIZES["ood"], seed=100 + seed)),
            "mimlib.synthetic (embedded, seeded)"))
    if spec in NOISE_SETS:
        return _ood_set(spec, noise_images(spec, NOISE_SIZE, seed), "OE-paper noise (seeded)")
    if spec in OPENOOD_OOD_SETS:
        return _openood(spec, "test", options)
    return _paper_ood(spec, options)  # one of the paper's sets, or the 300K random images


MNIST_FILES = (MNIST_IMAGES, "t10k-labels-idx1-ubyte.gz")


def _mnist(folder: Path | None, options: DataOptions, name: str) -> ImageSet:
    """The 10,000 MNIST test digits as 32x32 RGB (from ``folder``, or torchvision's download):
    grey copied to three channels, resized bilinearly from 28x28 (the usual way to show digits
    to a CIFAR model)."""
    if folder is None:
        items = fetch.data_items("mnist", options.root)
        fetch.ensure(items, download=options.download)
        folder = items[0].path.parent
    path = folder / MNIST_FILES[0]
    if not path.is_file():
        raise DataError(f"{folder} has no {MNIST_FILES[0]}; 'mnist:PATH' needs the original "
                        f"MNIST test files {' and '.join(MNIST_FILES)}")
    return _cached(_cache_file("mnist", path, name), lambda: _decode_mnist(path, name))


def _decode_mnist(path: Path, name: str) -> ImageSet:
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is not a readable gzip file ({type(err).__name__}: {err}); "
                        "replace it with the original MNIST test file") from err
    magic, n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in range(0, 16, 4))
    if magic != 2051 or len(raw) != 16 + n * rows * cols:
        raise DataError(f"{path} is not an MNIST idx3 image file (or is truncated)")
    digits = np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)
    out = np.empty((n, 32, 32), np.uint8)
    for i, d in enumerate(digits):
        out[i] = np.asarray(Image.fromarray(d).resize((32, 32), Image.BILINEAR))
    images = np.repeat(out[:, None], 3, axis=1)
    return _ood_set(name, torch.from_numpy(images),
                    f"MNIST test digits from {path}, grey to RGB, 28x28 resized to 32x32")


def _ood_set(name: str, images: Tensor, source: str) -> ImageSet:
    return ImageSet(name, images, torch.full((len(images),), -1, dtype=torch.int64), (), source)


def _ood_folder(path: Path, mode: str, name: str, seed: int) -> ImageSet:
    if not path.exists():
        raise DataError(f"{path} does not exist; give an existing folder or .tar/.tar.xz")
    return _cached(_cache_file("ood", path, mode, name, seed),
                   lambda: _decode_ood_folder(path, mode, name, seed))


def _decode_ood_folder(path: Path, mode: str, name: str, seed: int) -> ImageSet:
    source = _Source(path)
    files = source.images_under("")
    if not files:
        raise DataError(f"no images in {path} ({', '.join(IMAGE_SUFFIXES)}); give a folder or "
                        "archive that holds image files")
    rng = np.random.default_rng(seed)
    out = np.empty((len(files), 32, 32, 3), np.uint8)
    for i, f in enumerate(files):
        img = _decode(source.read(f), f)
        out[i] = np.asarray(_crop_or_resize(img, mode, rng))
    return _ood_set(name, torch.from_numpy(out.transpose(0, 3, 1, 2).copy()),
                    f"{mode} of {len(files)} images in {path} (seed {seed})")


def _crop_or_resize(img: Image.Image, mode: str, rng: np.random.Generator) -> Image.Image:
    """The ODIN recipes: a random 32x32 crop, or a downscale to 32x32."""
    if mode == "resize" or min(img.size) < 32:
        return img.resize((32, 32), Image.BILINEAR)
    left = int(rng.integers(0, img.size[0] - 32 + 1))
    top = int(rng.integers(0, img.size[1] - 32 + 1))
    return img.crop((left, top, left + 32, top + 32))


def _paper_ood(name: str, options: DataOptions) -> ImageSet:
    """One of the paper's seven OOD sets (or the 300K random images), fetched once with its
    checksum and read by pytorch-ood / torchvision; the decoded pixels are cached."""
    items = fetch.data_items(name, options.root)
    fetch.ensure(items, download=options.download)
    root = Path(options.root) / "ood"

    def decode() -> ImageSet:
        dataset = _paper_ood_factories()[name](str(root), False)
        return _ood_set(name, _pil_dataset_to_uint8(dataset),
                        f"{type(dataset).__name__} ({root}), resized to 32x32")
    # keyed by the checksums of what was fetched: ensure() has just checked it is complete
    key = f"paper|{root.resolve()}|{name}|{[i.checksum for i in items]}|v2"  # v2: as _cache_file
    return _cached(_cache_root() / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz", decode)


#: CIFAR-10's classes in label order (the OpenOOD image lists give the labels as numbers).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def _openood(name: str, split: str, options: DataOptions) -> ImageSet:
    """A set of the OpenOOD v1.5 CIFAR-10 benchmark, exactly its image list (train or test of
    the ID set; test of an OOD set), read by pytorch-ood's ``ImageListDataset`` as its
    ``CIFAR10_OpenOOD`` does, with OpenOOD's test preprocessing for CIFAR (RGB, shorter side
    resized to 32, centre crop 32x32); OOD labels are -1. The decoded pixels are cached."""
    from pytorch_ood.dataset.img import ImageListDataset

    items = fetch.openood_items(name, options.root)
    fetch.ensure(items, download=options.download)
    _, lists = fetch.openood_lists(name)
    list_dir, images = fetch.openood_paths(options.root)
    imglist = list_dir / (lists[0] if split == "train" else lists[-1])

    def decode() -> ImageSet:
        dataset = ImageListDataset(str(images), str(imglist))
        out = np.empty((len(dataset), 3, 32, 32), np.uint8)
        for i, path in enumerate(dataset.files):
            with Image.open(path) as img:
                out[i] = np.asarray(_resize_crop_32(rgb8(img, path))).transpose(2, 0, 1)
        source = f"OpenOOD v1.5 {imglist.name} ({images}), pytorch-ood ImageListDataset"
        if name == OPENOOD_ID:
            return ImageSet(f"{name}/{split}", torch.from_numpy(out),
                            torch.as_tensor(dataset.labels, dtype=torch.int64), CIFAR10_CLASSES,
                            source)
        return _ood_set(name, torch.from_numpy(out), source)
    key = f"openood|{images.resolve()}|{fetch.file_digest(imglist, 'sha256')}|v1"
    return _cached(_cache_root() / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz", decode)


def _resize_crop_32(img: Image.Image) -> Image.Image:
    """OpenOOD's CIFAR test transform on one image: shorter side to 32 (bilinear), centre crop."""
    w, h = img.size
    if (w, h) != (32, 32):
        scale = 32 / min(w, h)
        img = img.resize((max(32, round(w * scale)), max(32, round(h * scale))), Image.BILINEAR)
        left, top = (img.size[0] - 32) // 2, (img.size[1] - 32) // 2
        img = img.crop((left, top, left + 32, top + 32))
    return img


def _paper_ood_factories() -> dict[str, Callable[[str, bool], object]]:
    from pytorch_ood.dataset.img import (LSUNCrop, LSUNResize, Textures, TinyImageNetCrop,
                                         TinyImageNetResize, TinyImages300k)
    from torchvision.datasets import SVHN, Places365

    return {
        "tinyimagenet_crop": lambda r, d: TinyImageNetCrop(r, download=d),
        "tinyimagenet_resize": lambda r, d: TinyImageNetResize(r, download=d),
        "lsun_crop": lambda r, d: LSUNCrop(r, download=d),
        "lsun_resize": lambda r, d: LSUNResize(r, download=d),
        "textures": lambda r, d: Textures(r, download=d),
        "svhn": lambda r, d: SVHN(r, split="test", download=d),
        "places365": lambda r, d: Places365(r, split="val", small=True, download=d),
        "tinyimages300k": lambda r, d: TinyImages300k(r, download=d),  # OE's auxiliary set
    }


def _pil_dataset_to_uint8(dataset: object) -> Tensor:
    """Every image of a PIL data set, resized to 32x32 as the authors' transform does.

    Sets that keep their pixels in a 32x32 uint8 array (SVHN, the 300K random images) are
    converted directly instead of image by image.
    """
    raw = getattr(dataset, "data", None)
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint8 and raw.ndim == 4:
        if raw.shape[1:] == (3, 32, 32):
            return torch.from_numpy(np.ascontiguousarray(raw))
        if raw.shape[1:] == (32, 32, 3):
            return torch.from_numpy(np.ascontiguousarray(raw.transpose(0, 3, 1, 2)))
    n = len(dataset)  # type: ignore[arg-type]
    out = np.empty((n, 32, 32, 3), np.uint8)
    for i in range(n):
        img = rgb8(dataset[i][0], f"{type(dataset).__name__} image {i}")  # type: ignore[index]
        if img.size != (32, 32):
            img = img.resize((32, 32), Image.BILINEAR)
        out[i] = np.asarray(img)
    return torch.from_numpy(out.transpose(0, 3, 1, 2).copy())
