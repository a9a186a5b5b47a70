import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from mimlib.data import DataOptions, load_id, load_ood

from mimlib.images import ImageSet

from mimlib.noise import noise_images
from mimlib.errors import ConfigError, DataError
from mimlib.synthetic import ID_CLASSES


def _write_images(folder, n, size=(32, 32), seed=0, suffix=".png"):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img_{i}{suffix}")


@pytest.fixture
def image_folder(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog", "emu"):
            _write_images(tmp_path / "ds" / split / cls, n, seed=hash((split, cls)) % 1000)
    return tmp_path / "ds"


def test_synthetic_id_set_is_balanced_deterministic_and_embedded() -> None:
    a, b = load_id("synthetic", "train"), load_id("synthetic", "train")
    assert a.images.shape == (6000, 3, 32, 32) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and a.sha256() == b.sha256()
    assert np.bincount(a.labels.numpy()).tolist() == [1000] * len(ID_CLASSES)
    assert a.sha256() != load_id("synthetic", "test").sha256()


def test_synthetic_ood_sets_are_unlabelled_and_differ_from_id() -> None:
    for name in ("synthetic_shapes", "synthetic_morphs", "synthetic_textures", "synthetic_scenes"):
        s = load_ood(name)
        assert (s.labels == -1).all() and len(s) == 1200
        assert s.sha256() != load_ood("synthetic_shapes").sha256() or name == "synthetic_shapes"


def test_image_folder_and_its_tar_archive_load_the_same(image_folder, tmp_path) -> None:
    train = load_id(f"folder:{image_folder}", "train")
    assert len(train) == 12 and train.classes == ("cat", "dog", "emu")
    assert sorted(train.labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    assert train.labels.tolist() != sorted(train.labels.tolist())  # a fixed shuffled order
    archive = tmp_path / "ds.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(image_folder, arcname="ds")
    from_tar = load_id(f"folder:{archive}", "train")
    assert torch.equal(from_tar.images, train.images)
    files = sorted((image_folder / "train").rglob("*.png"))
    originals = {np.asarray(Image.open(f)).tobytes() for f in files}
    assert {img.permute(1, 2, 0).numpy().tobytes() for img in train.images} == originals


def test_ood_folder_crop_and_resize(tmp_path) -> None:
    _write_images(tmp_path / "big", 5, size=(64, 48))
    crop = load_ood(f"tin_crop=crop:{tmp_path / 'big'}")
    resize = load_ood(f"resize:{tmp_path / 'big'}")
    assert crop.name == "tin_crop" and resize.name == "big_resize"
    assert crop.images.shape == resize.images.shape == (5, 3, 32, 32)
    # a crop holds original pixels: each crop occurs somewhere in its source image
    src = np.asarray(Image.open(sorted((tmp_path / "big").iterdir())[0]))
    patch = crop.images[0].permute(1, 2, 0).numpy()
    found = any(np.array_equal(src[y:y + 32, x:x + 32], patch)
                for y in range(48 - 31) for x in range(64 - 31))
    assert found


@pytest.mark.parametrize("make,match", [
    (lambda p: p.mkdir(), "no images"),
    (lambda p: (p.mkdir(), (p / "notes.txt").write_text("hi")), "no images"),
    (lambda p: (p.mkdir(), (p / "x.jpg").write_bytes(b"not a jpeg")), "not a readable image"),
])
def test_bad_ood_folders_are_errors(tmp_path, make, match) -> None:
    make(tmp_path / "f")
    with pytest.raises(DataError, match=match):
        load_ood(f"crop:{tmp_path / 'f'}")


def test_bad_id_folders_are_errors(tmp_path, image_folder) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_id(f"folder:{tmp_path / 'absent'}", "train")
    (tmp_path / "flat" / "train").mkdir(parents=True)
    _write_images(tmp_path / "flat" / "train", 2)
    with pytest.raises(DataError):
        load_id(f"folder:{tmp_path / 'flat'}", "train")
    with pytest.raises(DataError, match="no 'test/' folder"):
        load_id(f"folder:{tmp_path / 'flat'}", "test")


def test_unknown_names_are_errors() -> None:
    with pytest.raises(ConfigError, match="unknown ID data set"):
        load_id("imagenet", "train")
    with pytest.raises(ConfigError, match="unknown OOD data set"):
        load_ood("fashion_mnist")
    with pytest.raises(ConfigError, match="split"):
        load_id("synthetic", "val")


def test_missing_downloads_with_downloads_off_are_errors(tmp_path) -> None:
    off = DataOptions(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match="downloads are switched off"):
        load_id("cifar10", "train", off)
    with pytest.raises(DataError, match="downloads are switched off"):
        load_ood("tinyimagenet_crop", off)


def test_noise_sets_follow_the_oe_recipes() -> None:
    rademacher = noise_images("rademacher", 200, 0)
    assert set(rademacher.unique().tolist()) == {0, 255}
    assert abs(rademacher.float().mean().item() / 255 - 0.5) < 0.01
    gaussian = noise_images("gaussian", 200, 0).float() / 255
    assert abs(gaussian.mean().item() - 0.5) < 0.01
    assert abs(gaussian.std().item() - 0.235) < 0.02  # std of clip(N(0, .5), -1, 1) / 2
    blobs = noise_images("blobs", 200, 0).float() / 255
    assert 0.2 < (blobs == 0).float().mean().item() < 0.9 and blobs.max() <= 1
    assert torch.equal(noise_images("blobs", 5, 1), noise_images("blobs", 5, 1))


def test_image_set_checks_its_own_shape() -> None:
    with pytest.raises(DataError, match="no images"):
        ImageSet("empty", torch.zeros(0, 3, 32, 32, dtype=torch.uint8),
                 torch.zeros(0, dtype=torch.int64))
    with pytest.raises(DataError, match="uint8"):
        ImageSet("float", torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.int64))
    s = load_ood("gaussian").subset(10, seed=3)
    assert len(s) == 10 and torch.equal(s.images, load_ood("gaussian").subset(10, seed=3).images)


def test_decoded_folders_are_cached_until_the_folder_changes(image_folder, monkeypatch) -> None:
    first = load_id(f"folder:{image_folder}", "test")
    calls = []
    import mimlib.data as data

    original = data._decode_image_folder
    monkeypatch.setattr(data, "_decode_image_folder",
                        lambda *a: calls.append(a) or original(*a))
    again = load_id(f"folder:{image_folder}", "test")
    assert calls == [] and torch.equal(again.images, first.images)
    assert again.classes == first.classes
    _write_images(image_folder / "test" / "cat", 3, seed=99, suffix=".jpg")
    changed = load_id(f"folder:{image_folder}", "test")
    assert len(calls) == 1 and len(changed) == len(first) + 3


@pytest.mark.parametrize("change,only_train,only_test", [
    ("an empty class folder in train/", "none", "bee"),
    ("an empty class folder in test/", "bee", "none"),
    ("another class name in test/", "emu", "owl"),
])
def test_train_and_test_with_other_classes_are_refused(image_folder, change, only_train,
                                                       only_test) -> None:
    """Labels are indices into the sorted class folders that hold images: splits with other
    classes would give one label two meanings (bee is 0 in test/ and absent from train/)."""
    if change == "an empty class folder in train/":
        (image_folder / "train" / "bee").mkdir()
        _write_images(image_folder / "test" / "bee", 2)
    elif change == "an empty class folder in test/":
        _write_images(image_folder / "train" / "bee", 2)
        (image_folder / "test" / "bee").mkdir()
    else:
        (image_folder / "test" / "emu").rename(image_folder / "test" / "owl")
    for split in ("train", "test"):
        with pytest.raises(DataError, match="train/ and test/ hold images of different "
                                            "classes") as err:
            load_id(f"folder:{image_folder}", split)
        other = "test" if split == "train" else "train"
        only = {"train": only_train, "test": only_test}
        assert f"only in {split}/: {only[split]}; only in {other}/: {only[other]}" \
            in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_mnist_file_is_named(tmp_path, damage) -> None:
    import gzip

    folder = tmp_path / "mnist"
    folder.mkdir()
    path = folder / "t10k-images-idx3-ubyte.gz"
    if damage == "garbage":
        path.write_bytes(b"<html>rate limited</html>")
    else:
        header = (2051).to_bytes(4, "big") + (100).to_bytes(4, "big") + (28).to_bytes(4, "big")
        whole = gzip.compress(header + (28).to_bytes(4, "big") + bytes(100 * 28 * 28))
        path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="is not a readable gzip file") as err:
        load_ood(f"mnist:{folder}")
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- image modes

SIZE = (32, 32)


def _palette(transparent: bool) -> Image.Image:
    img = Image.new("P", SIZE, 1)
    img.putpalette([0, 0, 0, 200, 100, 50])
    if transparent:
        img.info["transparency"] = 1
    return img


def _pgm16(path, value: int) -> None:
    path.write_bytes(b"P5\n32 32\n65535\n" + np.full(32 * 32, value, ">u2").tobytes())


#: (mode as read back, file suffix, how to write it, the RGB pixel it must load as)
FILE_MODES = [
    ("1", ".png", lambda p: Image.new("1", SIZE, 1).save(p), (255, 255, 255)),
    ("L", ".png", lambda p: Image.new("L", SIZE, 128).save(p), (128, 128, 128)),
    ("LA", ".png", lambda p: Image.new("LA", SIZE, (128, 0)).save(p), (128, 128, 128)),
    ("P", ".png", lambda p: _palette(False).save(p), (200, 100, 50)),
    ("P", ".gif", lambda p: _palette(True).save(p, transparency=1), (200, 100, 50)),
    ("RGB", ".png", lambda p: Image.new("RGB", SIZE, (200, 100, 50)).save(p), (200, 100, 50)),
    ("RGBA", ".png", lambda p: Image.new("RGBA", SIZE, (200, 100, 50, 0)).save(p),
     (200, 100, 50)),
    ("CMYK", ".tif", lambda p: Image.new("CMYK", SIZE, (0, 255, 255, 0)).save(p), (255, 0, 0)),
    ("LAB", ".tif", lambda p: Image.new("LAB", SIZE, (255, 128, 128)).save(p), (255, 255, 255)),
    ("I;16", ".png", lambda p: Image.new("I;16", SIZE, 32768).save(p), (128, 128, 128)),
    ("I;16", ".tif", lambda p: Image.new("I;16", SIZE, 65535).save(p), (255, 255, 255)),
    ("I;16B", ".tif", lambda p: Image.new("I;16B", SIZE, 16384).save(p), (64, 64, 64)),
    ("I", ".tif", lambda p: Image.new("I", SIZE, 32768).save(p), (128, 128, 128)),
    ("I", ".ppm", lambda p: _pgm16(p, 32768), (128, 128, 128)),
    ("F", ".tif", lambda p: Image.new("F", SIZE, 0.5).save(p), (128, 128, 128)),
]


@pytest.mark.parametrize("mode,suffix,write,rgb", FILE_MODES,
                         ids=[f"{m}{s}" for m, s, _, _ in FILE_MODES])
def test_an_image_of_every_mode_loads_as_its_8_bit_rgb_colour(tmp_path, mode, suffix, write,
                                                              rgb) -> None:
    """Wide modes are scaled from their range (16 bits; [0, 1] for floats), alpha is dropped
    keeping the stored colour, the rest is Pillow's conversion: one pixel value, +-1."""
    (tmp_path / "ood").mkdir()
    path = tmp_path / "ood" / f"img{suffix}"
    write(path)
    assert Image.open(path).mode == mode  # the file really holds the mode under test
    loaded = load_ood(f"crop:{tmp_path / 'ood'}").images[0]
    expected = torch.tensor(rgb).view(3, 1, 1)
    assert (loaded.int() - expected).abs().max() <= 1, loaded[:, 0, 0].tolist()


def test_a_16_bit_grey_png_loads_as_mid_grey_in_id_folders_ood_folders_and_paper_sets(
        tmp_path) -> None:
    """32768 of 65535 is 128 of 255 whichever loader reads it (Pillow's convert gives 255)."""
    grey = Image.fromarray(np.full((40, 40), 32768, np.uint16))
    assert grey.mode == "I;16"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "id" / split / cls).mkdir(parents=True)
            grey.save(tmp_path / "id" / split / cls / "grey.png")
    (tmp_path / "ood").mkdir()
    grey.save(tmp_path / "ood" / "grey.png")
    from mimlib.data import _pil_dataset_to_uint8

    loads = {split: load_id(f"folder:{tmp_path / 'id'}", split).images
             for split in ("train", "test")}
    for kind in ("crop", "resize"):
        loads[kind] = load_ood(f"{kind}:{tmp_path / 'ood'}").images
    loads["paper set"] = _pil_dataset_to_uint8([(grey, 0)])
    for where, images in loads.items():
        assert (images.int() - 128).abs().max() <= 1, (where, images.unique().tolist())


@pytest.mark.parametrize("mode,value,why", [
    ("I", 70000, "values from 70000 to 70000"),
    ("I", -5, "values from -5 to -5"),
    ("F", 1.5, "values from 1.5 to 1.5"),
    ("F", float("nan"), "not finite"),
])
def test_an_image_outside_its_modes_range_is_refused_naming_file_and_mode(tmp_path, mode, value,
                                                                           why) -> None:
    (tmp_path / "ood").mkdir()
    path = tmp_path / "ood" / "odd.tif"
    Image.new(mode, SIZE, value).save(path)
    with pytest.raises(DataError, match=f"odd.tif is a mode {mode} image") as err:
        load_ood(f"crop:{tmp_path / 'ood'}")
    assert why in str(err.value)


@pytest.mark.parametrize("mode,colour,rgb", [
    ("La", (64, 128), (128, 128, 128)),  # premultiplied: the stored colour is 64 / (128 / 255)
    ("RGBa", (100, 50, 25, 128), (199, 100, 50)),
    ("PA", (1, 0), (200, 100, 50)),
    ("RGBX", (200, 100, 50, 0), (200, 100, 50)),
    ("YCbCr", (128, 128, 128), (128, 128, 128)),
    ("HSV", (0, 255, 255), (255, 0, 0)),
    ("I;16L", 32768, (128, 128, 128)),
    ("I;16N", 32768, (128, 128, 128)),
])
def test_modes_made_in_memory_convert_by_the_same_rules(mode, colour, rgb) -> None:
    """Modes Pillow makes in memory (a plugin or a user's data set may hand them over)."""
    from mimlib.pixels import rgb8

    img = Image.new(mode, (2, 2), colour)
    if mode == "PA":
        img.putpalette([0, 0, 0, 200, 100, 50])
    out = np.asarray(rgb8(img, "mem.png"))
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert np.abs(out.astype(int) - rgb).max() <= 1, out[0, 0].tolist()
