"""Data named by checksum: store keys are known without the files, and never re-used for
other bytes."""

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from mimlib import pins
from mimlib.companion.results import experiment
from mimlib.data import load_ood
from mimlib.errors import ConfigError, DataError
from mimlib.companion.results.experiment import Experiment
from mimlib.companion.results.setup import Setup
from mimlib.specs import DataSpec
from mimlib.companion.results.store import Store


def _image_folder(root: Path, n: int = 3, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def test_a_path_spec_is_named_by_the_checksum_of_its_files_not_its_path(tmp_path) -> None:
    a = _image_folder(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    ids = {pins.identity(f"resize:{p}") for p in (a, b)}
    assert len(ids) == 1 and next(iter(ids)).startswith("resize:sha256:")
    assert pins.identity(f"tin=crop:{a}").startswith("tin=crop:sha256:")
    assert pins.identity("gaussian") == "gaussian"
    (b / "0.png").write_bytes((a / "1.png").read_bytes())  # other bytes: another identity
    assert pins.identity(f"resize:{b}") != pins.identity(f"resize:{a}")


def test_a_pin_names_the_data_without_the_files_and_guards_them(tmp_path) -> None:
    folder = _image_folder(tmp_path / "ood")
    digest = pins.source_digest(folder)
    spec = f"tin=resize:{folder}#sha256={digest}"
    assert pins.identity(spec) == f"tin=resize:sha256:{digest}"
    assert len(load_ood(spec)) == 3  # verified, then read
    assert pins.display(spec) == f"tin=resize:ood@{digest[:8]}"
    (folder / "2.png").unlink()  # a partial copy
    with pytest.raises(DataError, match="other bytes"):
        load_ood(spec)
    shutil.rmtree(folder)
    assert pins.identity(spec) == f"tin=resize:sha256:{digest}"  # still known
    with pytest.raises(DataError, match="absent"):
        load_ood(spec)
    with pytest.raises(ConfigError, match="64 hex"):
        DataSpec.parse(f"resize:{folder}#sha256=abc")
    with pytest.raises(ConfigError, match="take a pin"):
        pins.identity("gaussian#sha256=" + "0" * 64)


def test_stored_results_are_found_through_the_pin_when_the_data_are_gone(tmp_path) -> None:
    folder = _image_folder(tmp_path / "ood", n=40)
    pin = pins.source_digest(folder)
    setup = Setup(ood_sets=(f"pics=resize:{folder}#sha256={pin}",), pretrain_epochs=1,
                  train_limit=64, test_limit=50, device="cpu")
    store = Store(tmp_path / "store")
    first = Experiment(setup, store).evaluate(Experiment(setup, store).base_model())
    shutil.rmtree(folder)
    experiment._load_ood.cache_clear()  # as in a new process
    assert setup.results_only
    setup.preflight()  # absent pinned data are not an error before work ...
    again = Experiment(setup, store)
    assert again.evaluate(again.base_model()).rows == first.rows  # ... stored results are read
    with pytest.raises(DataError, match="absent"):
        again.evaluate(again.base_model(), ("Energy",))  # ... and new work says what it needs


def test_mnist_digits_become_32x32_rgb_images(tmp_path) -> None:
    digits = np.zeros((5, 28, 28), np.uint8)
    digits[:, 10:18, 12:16] = 255
    header = b"".join(v.to_bytes(4, "big") for v in (2051, 5, 28, 28))
    (tmp_path / pins.MNIST_IMAGES).write_bytes(gzip.compress(header + digits.tobytes()))
    images = load_ood(f"mnist=mnist:{tmp_path}")
    assert images.name == "mnist" and images.images.shape == (5, 3, 32, 32)
    assert (images.images[:, 0] == images.images[:, 2]).all()  # grey in every channel
    assert images.images[0, 0, 16, 16] > 200 and images.images[0, 0, 2, 2] == 0
    (tmp_path / pins.MNIST_IMAGES).write_bytes(gzip.compress(header + digits.tobytes()[:-10]))
    with pytest.raises(DataError, match="truncated"):
        load_ood(f"mnist:{tmp_path}", seed=1)  # another cache key: the file is read again
