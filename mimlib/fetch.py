"""Files from the internet, checked in place: found before any work, fetched once, or listed.

Every remote file a run can need (the CIFAR sets, the paper's OOD sets, MNIST, the OE paper's
300K random images; published weights are added by :mod:`.needs`) is an :class:`Item`: URL, file
name, checksum, approximate size and the layout it must have once in place. URLs, file names and
checksums are read from torchvision and pytorch-ood, the libraries that later read the files, so
each has one source. A download goes to a temporary name with a timeout on the connection, is
verified, then renamed; an archive is extracted beside its target and moved into place, so an
interrupted fetch never looks complete. An item is in place only when its folder holds the
expected number of images (or its files their checksums), so a partly extracted or hand-copied
set is caught with a message that names URL, file and layout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
#: Seconds a connection may wait for the server (connect or any read) before it is dropped.
TIMEOUT_S = 60.0
#: Images each extracted OOD set holds (the ODIN archives, DTD, the Places365 validation split).
EXPECTED_IMAGES = {"tinyimagenet_crop": 10_000, "tinyimagenet_resize": 10_000,
                   "lsun_crop": 10_000, "lsun_resize": 10_000, "textures": 5_640,
                   "places365": 36_500}
#: Approximate download sizes, as the hosts publish them (not measured here: no internet).
SIZES = {"cifar10": "163 MiB", "cifar100": "161 MiB", "svhn": "61 MiB",
         "places365": "501 MB", "places365 (file lists)": "6 MB", "textures": "596 MiB",
         "tinyimagenet_crop": "~20 MB", "tinyimagenet_resize": "~12 MB", "lsun_crop": "~17 MB",
         "lsun_resize": "~17 MB", "mnist": "1.6 MiB + 5 KiB", "tinyimages300k": "879 MiB"}
TINYIMAGES_SHAPE = (300_000, 32, 32, 3)
#: What an OpenOOD v1.5 archive (Google Drive) has in place of a checksum: neither OpenOOD's
#: download script nor pytorch-ood 0.4 publishes one, so each archive is checked by its
#: contents, every image that the benchmark's image lists name (their count, per set).
UNPINNED = "none published; checked by contents: every file the image lists name"
#: Sizes of OpenOOD's archives: unpublished, except pytorch-ood's note on the image lists.
OPENOOD_SIZES = {"benchmark_imglist": "~28 MB (pytorch-ood's note)"}
_GDRIVE = "https://drive.google.com/uc?id="
_ALGORITHMS = {"md5": "MD5", "sha256": "SHA-256"}


@dataclass(frozen=True)
class Item:
    """One remote file and what must be true once it is in place.

    ``check`` returns None when the item is complete in place, else what is wrong (missing,
    truncated, partly extracted); ``extract_to`` is where an archive is unpacked (None: the
    file itself is what is read).
    """

    name: str
    url: str
    path: Path
    checksum: str  # "md5:HEX" or "sha256:HEX"
    size: str
    layout: str
    check: Callable[[], str | None] = field(compare=False, repr=False)
    extract_to: Path | None = None

    def describe(self, problem: str) -> str:
        """One entry of the list of what is missing: what, from where, to where, how big."""
        checksum = (f"checksum: {UNPINNED}" if self.checksum == UNPINNED
                    else self.checksum.replace(':', ': ', 1))
        return (f"- {self.name}: {problem}\n    url: {self.url}\n    put it at: {self.path}"
                f"{' (it is extracted there)' if self.extract_to else ''}\n    layout: "
                f"{self.layout}\n    {checksum}\n    size: {self.size}")


# --------------------------------------------------------------------------- the items

def data_items(name: str, root: str | os.PathLike) -> list[Item]:
    """The remote files behind a named data set (``cifar10``, ``svhn``, ``mnist``...), in the
    folders where mimlib reads them under the data root; [] for sets that are not downloaded."""
    root = Path(root)
    if name in ("cifar10", "cifar100"):
        return [_cifar(name, root / name)]
    if name == "mnist":
        return _mnist(root / "mnist" / "MNIST" / "raw")
    if name == "svhn":
        from torchvision.datasets import SVHN

        url, filename, md5 = SVHN.split_list["test"]
        return [_plain_file(name, url, root / "ood" / filename, md5, "the SVHN test split "
                            "(26,032 images) as a MATLAB file")]
    if name == "places365":
        return _places365(root / "ood")
    if name == "tinyimages300k":
        return [_tinyimages(root / "ood")]
    if name in EXPECTED_IMAGES:
        return [_pytorch_ood_archive(name, root / "ood")]
    if name.startswith("openood_"):
        return openood_items(name, root)
    return []


def openood_lists(name: str) -> tuple[str, list[str]]:
    """OpenOOD's archive behind a set of the v1.5 CIFAR-10 benchmark (``openood_cifar10``,
    ``openood_tin``...) and the image lists that name its images, as pytorch-ood 0.4's
    ``CIFAR10_OpenOOD`` declares them: train and test for the ID set, test for an OOD set."""
    from pytorch_ood.benchmark.img import CIFAR10_OpenOOD as B

    archive = name.removeprefix("openood_")
    if archive == "cifar10":
        return archive, [B._train_imglist, B._test_id_imglist]
    lists = [f for _, f in B._ood_imglists if f == f"test_{archive}.txt"]
    if not lists or archive not in B._download_names:
        raise DataError(f"{name} is not a set of OpenOOD's CIFAR-10 benchmark")
    return archive, lists


def openood_paths(root: str | os.PathLike) -> tuple[Path, Path]:
    """Where the benchmark lives under the data root: the image-list folder (OpenOOD's
    ``benchmark_imglist/cifar10``) and the images root the lists' paths are relative to
    (OpenOOD's ``images_classic``)."""
    base = Path(root) / "openood"
    return base / "benchmark_imglist" / "cifar10", base / "images_classic"


def openood_items(name: str, root: str | os.PathLike) -> list[Item]:
    """The OpenOOD image lists and the archive of one set, each checked in place by what the
    lists name (pytorch-ood 0.4's Google-Drive ids, from OpenOOD's download script)."""
    from pytorch_ood.benchmark.img import openood as O

    from pytorch_ood.benchmark.img import CIFAR10_OpenOOD as B

    archive, lists = openood_lists(name)
    list_dir, images = openood_paths(root)
    bundle = list_dir.parents[1]
    every = [B._train_imglist, B._test_id_imglist, *(f for _, f in B._ood_imglists)]

    def lists_check() -> str | None:  # one item for the benchmark: every list its sets read
        absent = [f for f in every if not (list_dir / f).is_file()]
        return f"{list_dir} lacks {absent}" if absent else None

    def images_check() -> str | None:
        if lists_check():
            return "cannot be checked before the image lists are in place"
        wanted = [line.split()[0] for f in lists for line in (list_dir / f).read_text()
                  .splitlines() if line.strip() and not line.startswith("#")]
        absent = [w for w in wanted if not (images / w).is_file()]
        return (f"{images / archive} lacks {len(absent):,} of the {len(wanted):,} images its "
                f"image lists name (first: {absent[0]})" if absent else None)

    folder = images / archive
    return [Item("OpenOOD image lists", _GDRIVE + O._IMGLIST_GDRIVE_ID,
                 bundle / "benchmark_imglist.zip", UNPINNED, OPENOOD_SIZES["benchmark_imglist"],
                 f"benchmark_imglist/cifar10/ with {every}", lists_check, extract_to=bundle),
            Item(f"OpenOOD {archive}", _GDRIVE + O._OPENOOD_GDRIVE_IDS[archive],
                 folder / f"{archive}.zip", UNPINNED, "not published (Google Drive)",
                 f"{archive}/ under {images}, holding every image the lists name",
                 images_check, extract_to=folder)]


def _md5_check(path: Path, md5: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if not path.is_file():
            return "missing"
        return None if file_digest(path, "md5") == md5 else "fails its MD5 check (truncated?)"
    return check


def _plain_file(name: str, url: str, path: Path, md5: str, layout: str) -> Item:
    return Item(name, url, path, f"md5:{md5}", SIZES.get(name, "?"), layout,
                _md5_check(path, md5))


def _cifar(name: str, folder: Path) -> Item:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    batches = [(folder / cls.base_folder / f, md5) for f, md5 in cls.train_list + cls.test_list]

    def check() -> str | None:
        bad = [p.name for p, md5 in batches if not p.is_file() or file_digest(p, "md5") != md5]
        return None if not bad else f"{cls.base_folder}/ lacks or has damaged {bad}"
    return Item(name, cls.url, folder / cls.filename, f"md5:{cls.tgz_md5}", SIZES[name],
                f"{cls.base_folder}/ with {[f for f, _ in cls.train_list + cls.test_list]}",
                check, extract_to=folder)


def _mnist(raw: Path) -> list[Item]:
    from torchvision.datasets import MNIST

    return [_plain_file("mnist", MNIST.mirrors[0] + f, raw / f, md5,
                        "the original gzip files of the MNIST test set in one folder")
            for f, md5 in MNIST.resources if f.startswith("t10k")]


def _places365(root: Path) -> list[Item]:
    from torchvision.datasets import Places365 as P

    devkit, devkit_md5 = P._DEVKIT_META["standard"]
    images, images_md5 = P._IMAGES_META[("val", True)]
    lists = [root / P._CATEGORIES_META[0], root / P._FILE_LIST_META["val"][0]]
    folder, expected = root / "val_256", EXPECTED_IMAGES["places365"]

    def lists_check() -> str | None:
        absent = [p.name for p in lists if not p.is_file()]
        return f"{root} lacks {absent}" if absent else None

    return [Item("places365 (file lists)", P._BASE_URL + devkit, root / devkit,
                 f"md5:{devkit_md5}", SIZES["places365 (file lists)"],
                 f"{[p.name for p in lists]} in {root}",
                 lists_check, extract_to=root),
            Item("places365", P._BASE_URL + images, root / images, f"md5:{images_md5}",
                 SIZES["places365"], f"val_256/ with {expected:,} JPEG images",
                 _count_check(folder, expected), extract_to=root)]


def _pytorch_ood_archive(name: str, root: Path) -> Item:
    from pytorch_ood.dataset.img import (LSUNCrop, LSUNResize, Textures, TinyImageNetCrop,
                                         TinyImageNetResize)

    cls = {"tinyimagenet_crop": TinyImageNetCrop, "tinyimagenet_resize": TinyImageNetResize,
           "lsun_crop": LSUNCrop, "lsun_resize": LSUNResize, "textures": Textures}[name]
    expected = EXPECTED_IMAGES[name]
    archive, count = root / cls.filename, _count_check(root / cls.base_folder, expected)

    def check() -> str | None:  # pytorch-ood verifies the archive itself on every load
        return count() or (None if archive.is_file() else f"the archive {archive} is missing")
    return Item(name, cls.url, archive, f"md5:{cls.tgz_md5}", SIZES[name],
                f"{cls.base_folder.rstrip('/')}/ with {expected:,} images, and the archive "
                "itself beside it", check, extract_to=root)


def _tinyimages(root: Path) -> Item:
    from pytorch_ood.dataset.img import TinyImages300k

    path = root / TinyImages300k.filename

    def check() -> str | None:
        if not path.is_file():
            return "missing"
        import numpy as np

        try:
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(fh)
                offset = fh.tell()
        except ValueError:
            return "is not a NumPy .npy file"
        if shape != TINYIMAGES_SHAPE or dtype != np.uint8:
            return f"holds {shape} {dtype}, not {TINYIMAGES_SHAPE} uint8"
        expected = offset + int(np.prod(TINYIMAGES_SHAPE))
        size = path.stat().st_size
        return None if size == expected else f"is truncated ({size:,} of {expected:,} bytes)"
    return Item("tinyimages300k", TinyImages300k.url, path, f"md5:{TinyImages300k.md5}",
                SIZES["tinyimages300k"], f"one .npy array {TINYIMAGES_SHAPE} uint8", check)


def _count_check(folder: Path, expected: int) -> Callable[[], str | None]:
    def check() -> str | None:
        if not folder.is_dir():
            return f"{folder} is missing"
        n = count_images(folder)
        return None if n == expected else (f"{folder} holds {n:,} of its {expected:,} images "
                                           "(partly extracted or copied?)")
    return check


def count_images(folder: Path) -> int:
    """Image files under a folder, recursively."""
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


# --------------------------------------------------------------------------- in place or fetched

def missing(items: list[Item]) -> list[tuple[Item, str]]:
    """The items that are not complete in place, each with what is wrong."""
    out = []
    for item in dict.fromkeys(items):  # each once, in order
        problem = item.check()
        if problem is not None:
            out.append((item, problem))
    return out


def ensure(items: list[Item], *, download: bool, progress: bool = True) -> None:
    """Every item complete in place: fetch what is missing (downloads on), or stop with one
    list of everything missing, before any of it is needed (downloads off, or a failure)."""
    absent = missing(items)
    if absent and download:
        failures = []
        for item, _ in absent:
            try:
                fetch(item, progress=progress)
            except DataError as err:
                failures.append(str(err))
        absent = missing(items)
        if absent:
            raise DataError("could not fetch everything this run needs:\n"
                            + "\n".join(failures) + "\nStill missing:\n"
                            + "\n".join(i.describe(p) for i, p in absent)
                            + "\nDownload these on a machine with internet access and put them "
                            "where the list says (archives are extracted on the next run).")
    elif absent:
        raise DataError("downloads are switched off and this run needs data that is not in "
                        "place:\n" + "\n".join(i.describe(p) for i, p in absent)
                        + "\nPut each file where the list says (archives are extracted on the "
                        "next run), or allow downloads (setup download: true).")


def fetch(item: Item, *, progress: bool = True, timeout: float = TIMEOUT_S) -> None:
    """Put one item in place: download it (unless a verified copy is already there, such as an
    archive copied by hand), then extract it. Nothing half-done is left under a final name."""
    if item.checksum == UNPINNED:
        if not item.path.is_file():
            _gdrive_download(item)
    else:
        algorithm, expected = item.checksum.split(":", 1)
        if not (item.path.is_file() and file_digest(item.path, algorithm) == expected):
            _download(item, algorithm, expected, progress, timeout)
    if item.extract_to is not None:
        _extract(item.path, item.extract_to)
    problem = item.check()
    if problem is not None:
        raise DataError(f"{item.name} from {item.url} is still not in place after fetching: "
                        f"{problem}; expected layout: {item.layout}")


def _download(item: Item, algorithm: str, expected: str, progress: bool,
              timeout: float) -> None:
    part = item.path.with_name(f".{item.path.name}.{os.getpid()}.part")
    h = hashlib.new(algorithm)
    try:
        with urllib.request.urlopen(item.url, timeout=timeout) as response:
            item.path.parent.mkdir(parents=True, exist_ok=True)  # only once the server answers
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _bar(total, item.name, progress)
            with open(part, "wb") as out:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    h.update(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            if bar is not None:
                bar.close()
    except (OSError, ValueError) as err:  # URLError, timeouts, refused connections
        part.unlink(missing_ok=True)
        raise DataError(f"could not download {item.name} from {item.url}: {err}") from err
    if h.hexdigest() != expected:
        part.unlink(missing_ok=True)
        raise DataError(f"the download of {item.name} from {item.url} fails its "
                        f"{_ALGORITHMS[algorithm]} check (got {h.hexdigest()}, expected "
                        f"{expected}); try again later, or download it by hand")
    os.replace(part, item.path)


def _gdrive_download(item: Item) -> None:
    """An OpenOOD archive from Google Drive, through gdown as pytorch-ood downloads it (Drive
    answers large files with a confirmation page that a plain request cannot pass)."""
    try:
        import gdown
    except ImportError as err:
        raise DataError(f"{item.name} is on Google Drive ({item.url}): pip install gdown, or "
                        f"download it by hand to {item.path}") from err
    part = item.path.with_name(f".{item.path.name}.{os.getpid()}.part")
    item.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if gdown.download(item.url, str(part), quiet=False) is None:
            raise DataError(f"could not download {item.name} from {item.url}")
    except Exception as err:  # gdown raises its own errors for quota and access
        part.unlink(missing_ok=True)
        raise DataError(f"could not download {item.name} from {item.url}: {err}") from err
    os.replace(part, item.path)


def _extract(archive: Path, target: Path) -> None:
    """Unpack next to the target, then move each top-level entry into place (replacing a
    partial copy), so a failed extraction leaves nothing that looks complete."""
    from torchvision.datasets.utils import extract_archive

    staging = target / f".extracting-{archive.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        extract_archive(str(archive), str(staging))
        for entry in staging.iterdir():
            final = target / entry.name
            if final.is_dir():
                shutil.rmtree(final)
            elif final.exists():
                final.unlink()
            os.replace(entry, final)
    except Exception as err:  # a damaged or foreign archive
        raise DataError(f"could not extract {archive} ({type(err).__name__}: {err}); delete it "
                        "and fetch it again") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file (``md5``, ``sha256``...), read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _bar(total: int | None, desc: str, enabled: bool):  # tqdm or None
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"download {desc}", unit="B", unit_scale=True,
                file=sys.stderr, dynamic_ncols=True)
