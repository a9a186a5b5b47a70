"""The openood-cifar10 profile: the OpenOOD v1.5 CIFAR-10 benchmark as pytorch-ood 0.4 lays it
out, built from stand-in files (a dry run, no download), and its preflight offline."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mimlib import fetch
from mimlib.companion.results.catalog import groups_of
from mimlib.companion.run import needs
from mimlib.companion.run.orchestrate import notebook_parameters
from mimlib.companion.book.pages import notebook_names
from mimlib.companion.book.profiles import load_profile
from mimlib.data import DataOptions, load_id, load_ood
from mimlib.errors import DataError
from mimlib.specs import OPENOOD_ID, OPENOOD_OOD_SETS

ROOT = Path(__file__).resolve().parents[1]
#: stand-in images per list: (name in the lists, size of its images, images, label)
STAND_INS = {"train_cifar10.txt": ("cifar10/train", (32, 32), 12, True),
             "test_cifar10.txt": ("cifar10/test", (32, 32), 10, True),
             "test_cifar100.txt": ("cifar100/test", (32, 32), 4, False),
             "test_tin.txt": ("tin/test", (64, 64), 5, False),
             "test_mnist.txt": ("mnist/test", (28, 28), 3, False),
             "test_svhn.txt": ("svhn/test", (32, 32), 4, False),
             "test_texture.txt": ("texture/test", (300, 200), 2, False),
             "test_places365.txt": ("places365/test", (256, 256), 3, False)}


def _lay_out(root: Path, lists: Path) -> None:
    """The benchmark's files as OpenOOD's archives and image lists hold them: images under
    images_classic/<set>/, one 'PATH LABEL' line each (OOD labels -1)."""
    rng = np.random.default_rng(0)
    lists.mkdir(parents=True, exist_ok=True)
    for listed, (folder, size, n, labelled) in STAND_INS.items():
        lines = []
        for i in range(n):
            path = f"{folder}/{i:04d}.png"
            mode = "L" if folder.startswith("mnist") else "RGB"
            shape = size[::-1] if mode == "L" else (*size[::-1], 3)
            target = root / "openood" / "images_classic" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(target)
            lines.append(f"{path} {i % 10 if labelled else -1}")
        (lists / listed).write_text("\n".join(lines) + "\n")


@pytest.fixture
def benchmark(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMLIB_CACHE", str(tmp_path / "decoded"))
    lists = fetch.openood_paths(tmp_path)[0]
    _lay_out(tmp_path, lists)
    return tmp_path


def test_the_profiles_sets_are_built_from_files_laid_out_as_the_benchmark_expects(
        benchmark, monkeypatch) -> None:
    """Each set is exactly its image list, 32x32 uint8 (OpenOOD's CIFAR test transform), with
    OpenOOD's near / far groups; pytorch-ood's own CIFAR10_OpenOOD reads the same files."""
    from pytorch_ood.benchmark.img import CIFAR10_OpenOOD

    options = DataOptions(str(benchmark), download=False)
    assert fetch.missing([i for n in (OPENOOD_ID, *OPENOOD_OOD_SETS)
                          for i in fetch.data_items(n, benchmark)]) == []
    train, test = load_id(OPENOOD_ID, "train", options), load_id(OPENOOD_ID, "test", options)
    assert train.images.shape == (12, 3, 32, 32) and test.images.shape == (10, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.tolist() == [i % 10 for i in range(12)]
    assert train.num_classes == 10
    ood = {name: load_ood(name, options) for name in OPENOOD_OOD_SETS}
    assert {n: len(s) for n, s in ood.items()} == {
        "openood_cifar100": 4, "openood_tin": 5, "openood_mnist": 3, "openood_svhn": 4,
        "openood_texture": 2, "openood_places365": 3}
    assert all((s.labels == -1).all() and s.images.shape[1:] == (3, 32, 32) for s in ood.values())
    assert groups_of(list(ood)) == {"near": ["openood_cifar100", "openood_tin"],
                                    "far": ["openood_mnist", "openood_svhn", "openood_texture",
                                            "openood_places365"]}
    # a large image: shorter side to 32, centre crop (300x200 -> 48x32 -> 32x32 from the middle)
    source = Image.open(benchmark / "openood/images_classic/texture/test/0000.png")
    expected = np.asarray(source.resize((48, 32), Image.BILINEAR).crop((8, 0, 40, 32)))
    np.testing.assert_array_equal(ood["openood_texture"].images[0].permute(1, 2, 0).numpy(),
                                  expected)
    # pytorch-ood's benchmark class on the same layout names the same images, in order
    hub = benchmark / "hub"
    (hub / "openood_benchmark_imglist" / "benchmark_imglist").mkdir(parents=True)
    (hub / "openood_benchmark_imglist" / "benchmark_imglist" / "cifar10").symlink_to(
        fetch.openood_paths(benchmark)[0])
    (fetch.openood_paths(benchmark)[0] / "val_cifar10.txt").write_text("")
    (fetch.openood_paths(benchmark)[0] / "val_tin.txt").write_text("")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    theirs = CIFAR10_OpenOOD(str(benchmark / "openood" / "images_classic"), lambda x: x,
                             download=False)
    assert [len(s) for s in theirs.test_oods] == [len(s) for s in ood.values()]
    assert len(theirs.train_in) == len(train) and len(theirs.test_in) == len(test)


def test_a_partly_extracted_archive_is_named_with_what_it_lacks(benchmark) -> None:
    (benchmark / "openood/images_classic/tin/test/0003.png").unlink()
    [(item, problem)] = fetch.missing(fetch.data_items("openood_tin", benchmark))
    assert item.name == "OpenOOD tin" and "lacks 1 of the 5 images" in problem


def test_offline_the_profile_stops_at_once_with_one_list_of_every_missing_file(
        tmp_path, monkeypatch) -> None:
    """No data and no internet: the preflight of every chapter lists the image lists and the
    seven archives, each once, with URL, place and what stands for a checksum, before any run."""
    monkeypatch.setattr(fetch, "_gdrive_download", lambda item: (_ for _ in ()).throw(
        DataError(f"could not download {item.name} from {item.url}: offline")))
    profile = load_profile("openood-cifar10")
    planned = []
    for name in notebook_names(ROOT):
        params = notebook_parameters(ROOT, name, profile)
        params["setup"] = {**params["setup"], "data_root": str(tmp_path)}
        planned.append(params)
    with pytest.raises(DataError) as err:
        needs.prepare(planned, progress=False)
    text = str(err.value)
    names = ["OpenOOD image lists"] + [f"OpenOOD {a}" for a in (
        "cifar10", "cifar100", "tin", "mnist", "svhn", "texture", "places365")]
    assert all(text.count(f"- {n}: ") == 1 for n in names), text
    assert text.count("https://drive.google.com/uc?id=") >= 2 * len(names)  # failures + list
    assert f"checksum: {fetch.UNPINNED}" in text
    assert not any(tmp_path.rglob("*.zip"))
