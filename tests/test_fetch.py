"""Fetching what a run needs, offline: archives in the real layouts of torchvision and
pytorch-ood, served from file:// URLs, through the real download, check and load code."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mimlib import fetch
from mimlib.companion.run import needs
from mimlib.data import DataOptions, load_id, load_ood
from mimlib.errors import DataError


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _jpeg(seed: int, size: int = 36) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
def odin_server(tmp_path, monkeypatch):
    """pytorch-ood's Tiny ImageNet (crop) archive, 12 images in its real layout, at a file URL."""
    from pytorch_ood.dataset.img import TinyImageNetCrop

    archive = _tar(tmp_path / "server" / "Imagenet.tar.gz",
                   {f"Imagenet/test/{i}.jpg": _jpeg(i) for i in range(12)})
    monkeypatch.setattr(TinyImageNetCrop, "url", archive.as_uri())
    monkeypatch.setattr(TinyImageNetCrop, "tgz_md5", _md5(archive))
    monkeypatch.setitem(fetch.EXPECTED_IMAGES, "tinyimagenet_crop", 12)
    return archive


@pytest.fixture
def cifar_server(tmp_path, monkeypatch):
    """torchvision's CIFAR-10 archive (pickled batches, 10 images each) at a file URL."""
    from torchvision.datasets import CIFAR10

    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = pickle.dumps({"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                                      "labels": list(range(10))})
    meta = pickle.dumps({"label_names": [f"c{i}" for i in range(10)]})
    files = {f"cifar-10-batches-py/{k}": v for k, v in {**batches, "batches.meta": meta}.items()}
    archive = _tar(tmp_path / "server" / "cifar-10-python.tar.gz", files)
    md5 = {k: hashlib.md5(v).hexdigest() for k, v in batches.items()}
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(archive))
    monkeypatch.setattr(CIFAR10, "train_list", [[k, md5[k]] for k in batches if k != "test_batch"])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": hashlib.md5(meta).hexdigest()})
    return archive


def test_an_odin_archive_is_fetched_verified_extracted_and_loaded(odin_server, tmp_path):
    root = tmp_path / "data"
    ood = load_ood("tinyimagenet_crop", DataOptions(str(root), download=True))
    assert ood.images.shape == (12, 3, 32, 32) and (ood.labels == -1).all()
    assert (root / "ood" / "Imagenet.tar.gz").is_file()  # pytorch-ood verifies it on each load
    assert not list((root / "ood").glob(".*"))  # no temporary names or staging folders left
    again = load_ood("tinyimagenet_crop", DataOptions(str(root), download=False))
    assert again.sha256() == ood.sha256()


def test_torchvision_cifar_is_fetched_and_read_in_its_own_layout(cifar_server, tmp_path):
    root = tmp_path / "data"
    train = load_id("cifar10", "train", DataOptions(str(root), download=True))
    test = load_id("cifar10", "test", DataOptions(str(root), download=False))
    assert len(train) == 50 and len(test) == 10 and train.classes[0] == "c0"
    batch = root / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])  # a damaged batch is named, not read
    with pytest.raises(DataError, match=r"(?s)cifar10: cifar-10-batches-py/ lacks or has "
                                        r"damaged \['data_batch_3'\].*put it at"):
        load_id("cifar10", "train", DataOptions(str(root), download=False))


def test_a_hand_copied_archive_is_extracted_without_a_download(odin_server, tmp_path,
                                                                monkeypatch):
    root = tmp_path / "data"
    (root / "ood").mkdir(parents=True)
    (root / "ood" / "Imagenet.tar.gz").write_bytes(odin_server.read_bytes())

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(fetch.urllib.request, "urlopen", offline)
    assert len(load_ood("tinyimagenet_crop", DataOptions(str(root), download=True))) == 12


def test_a_partly_extracted_set_is_named_with_its_count_and_then_repaired(odin_server, tmp_path):
    root = tmp_path / "data"
    load_ood("tinyimagenet_crop", DataOptions(str(root), download=True))
    for image in sorted((root / "ood" / "Imagenet" / "test").iterdir())[:5]:
        image.unlink()
    off = DataOptions(str(root), download=False)
    with pytest.raises(DataError, match=r"holds 7 of its 12 images \(partly extracted"):
        load_ood("tinyimagenet_crop", off)
    load_ood("tinyimagenet_crop", DataOptions(str(root), download=True))  # re-extracted
    assert fetch.count_images(root / "ood" / "Imagenet" / "test") == 12


def test_a_download_that_fails_its_checksum_leaves_nothing(odin_server, tmp_path, monkeypatch):
    from pytorch_ood.dataset.img import TinyImageNetCrop

    monkeypatch.setattr(TinyImageNetCrop, "tgz_md5", "0" * 32)
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"(?s)fails its MD5 check.*Still missing"):
        load_ood("tinyimagenet_crop", DataOptions(str(root), download=True))
    assert list((root / "ood").iterdir()) == []  # no final name, no .part file


def test_every_connection_has_a_timeout_and_an_offline_run_creates_no_folders(
        odin_server, tmp_path, monkeypatch):
    seen = []

    def offline(url, timeout=None):
        seen.append(timeout)
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(fetch.urllib.request, "urlopen", offline)
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"(?s)could not download tinyimagenet_crop from file:.*"
                                        r"Name or service not known"):
        load_ood("tinyimagenet_crop", DataOptions(str(root), download=True))
    assert seen == [fetch.TIMEOUT_S]
    assert not root.exists()  # not even an empty data folder


def test_the_300k_random_images_are_checked_for_shape_and_truncation(tmp_path):
    item = fetch.data_items("tinyimages300k", tmp_path)[0]
    assert item.check() == "missing"
    item.path.parent.mkdir(parents=True)
    np.save(item.path, np.zeros((5, 32, 32, 3), np.uint8))
    assert "not (300000, 32, 32, 3) uint8" in item.check()
    with open(item.path, "wb") as fh:  # the real header, a tenth of the pixels
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False,
                                                  "shape": fetch.TINYIMAGES_SHAPE})
        fh.write(bytes(3072 * 30_000))
    assert item.check().startswith("is truncated (92,160,128 of 921,600,128 bytes")


def test_a_partial_places365_is_caught_before_torchvision_reads_it(tmp_path):
    items = fetch.data_items("places365", tmp_path)
    assert [i.path.name for i in items] == ["filelist_places365-standard.tar", "val_256.tar"]
    (tmp_path / "ood" / "val_256").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "ood" / "val_256" / f"Places365_val_{i:08d}.jpg").write_bytes(_jpeg(i))
    problems = dict((i.name, p) for i, p in fetch.missing(items))
    assert "lacks ['categories_places365.txt', 'places365_val.txt']" in problems[
        "places365 (file lists)"]
    assert "holds 3 of its 36,500 images" in problems["places365"]


def test_the_paper_run_lists_everything_missing_at_once_and_fetches_nothing(tmp_path):
    """Downloads off: one list over every ID set, OOD set, OE outlier set and checkpoint that the
    chosen notebooks' setups name (the main table's CIFAR-100 and the OE page's extras too)."""
    root = tmp_path / "nodata"
    setup = {"id_data": "cifar10", "ood_sets": ["tinyimagenet_crop", "svhn", "places365"],
             "arch": "wrn40_2", "base": "published", "download": False,
             "data_root": str(root), "weights_dir": str(tmp_path / "weights")}
    planned = [{"setup": setup, "id_datasets": ["cifar10", "cifar100"]},
               {"setup": setup, "id_datasets": ["cifar10", "cifar100"],
                "oe_outliers": "tinyimages300k", "published_oe": True}]
    with pytest.raises(DataError) as err:
        needs.prepare(planned, progress=False)
    text = str(err.value)
    for name in ("cifar10", "cifar100", "tinyimagenet_crop", "svhn", "places365",
                 "places365 (file lists)", "tinyimages300k",
                 "weights wrn-40-2/cifar10/crossentropy", "weights wrn-40-2/cifar100/crossentropy",
                 "weights wrn-40-2/cifar10/oe", "weights wrn-40-2/cifar100/oe"):
        assert f"- {name}: " in text, name
    assert text.count("- cifar100: ") == 1  # each item once, however many setups name it
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in text
    assert "md5: eb5a983be6a315427106f1b164d9cef3" in text  # SVHN's test file
    assert "size: 879 MiB" in text and "nothing was fetched" in text
    assert not root.exists() and not (tmp_path / "weights").exists()


def test_local_paths_of_every_setup_are_checked_up_front(tmp_path):
    """The page's own setup is fine; the second ID set of its id_datasets is not there."""
    setup = {"id_data": "synthetic", "ood_sets": ["gaussian"], "arch": "small_cnn"}
    needs.prepare([{"setup": setup}], progress=False)  # nothing to fetch, nothing missing
    planned = [{"setup": setup, "id_datasets": ["synthetic", f"folder:{tmp_path / 'absent'}"]}]
    with pytest.raises(DataError, match=r"absent.*does not exist"):
        needs.prepare(planned, progress=False)
