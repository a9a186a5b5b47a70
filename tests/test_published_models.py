"""mimlib's registry of published CIFAR classifiers: pinned, strictly loaded, normalised as
trained. The real files are read from ../shared/models when present (skipped otherwise)."""

import io
import os
import shutil
from pathlib import Path

import pytest
import torch

from mimlib.checkpoints import check_published, load_published
from mimlib.errors import CheckpointError, ConfigError, DataError
from mimlib.models import (IMAGENET, PUBLISHED, build_model, input_normalization, linear_head,
                           paper_weights, published_oe_weights, published_weights)

SHARED_MODELS = Path(os.environ.get("MIMLIB_SHARED_MODELS",
                                    Path(__file__).resolve().parents[2] / "shared" / "models"))
WRN10, WRN100 = 2_243_546, 2_255_156  # WRN-40-2 for 10 and 100 classes
PARAMETERS = {"resnet20/cifar10": 269_722, "resnet32/cifar10": 464_154,
              "resnet44/cifar10": 658_586, "resnet56/cifar10": 853_018,
              "densenet100/cifar10": 769_162, "wrn-40-2/cifar10/crossentropy": WRN10,
              "wrn-40-2/cifar10/oe": WRN10, "wrn-40-2/cifar100/crossentropy": WRN100,
              "wrn-40-2/cifar100/oe": WRN100}


def _shared(key: str) -> Path:
    path = SHARED_MODELS / PUBLISHED[key].file_name
    if not path.is_file():
        pytest.skip(f"{path} is absent (needs ../shared/models)")
    return path


@pytest.mark.parametrize("key", sorted(PUBLISHED))
def test_registry_entries_are_pinned_to_a_commit_and_a_full_digest(key: str) -> None:
    w = published_weights(key)
    assert len(w.sha256) == 64 and int(w.sha256, 16) >= 0
    assert w.url.startswith("https://github.com/") and "/raw/" in w.url
    if not w.source.startswith("pytorch-ood"):  # pytorch-ood's URLs name a branch; the
        assert len(w.url.split("/raw/")[1].split("/")[0]) == 40  # digest pins the bytes
    assert w.licence and w.source and len(w.normalization.mean) == 3
    if w.arch.startswith("resnet"):  # akamaster's file names carry the digest's first 8 digits
        assert w.file_name.split("-")[1].startswith(w.sha256[:8])
    model = build_model(w.arch, w.num_classes)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[key]


@pytest.mark.shared
@pytest.mark.parametrize("key", sorted(PUBLISHED))
def test_published_weights_load_strictly_with_their_normalisation(key: str) -> None:
    _shared(key)
    model = load_published(key, cache_dir=SHARED_MODELS, download=False)
    assert not model.training
    assert input_normalization(model) == PUBLISHED[key].normalization
    assert linear_head(model).out_features == PUBLISHED[key].num_classes


@pytest.mark.shared
def test_published_resnet20_classifies_the_jpeg_cifar10_test_images(cifar10_jpeg) -> None:
    from mimlib.data import load_id
    from mimlib.detectors import extract

    _shared("resnet20/cifar10")
    model = load_published("resnet20/cifar10", cache_dir=SHARED_MODELS, download=False)
    assert input_normalization(model) == IMAGENET
    test = load_id(f"folder:{cifar10_jpeg}", "test").subset(1000, 0)
    reps = extract(model, test, device="cpu")
    accuracy = float((reps.logits.argmax(1) == reps.labels).float().mean())
    # measured: 81.0% on all 10,000 JPEG test images (91.8% reported on the originals); the
    # same weights fed CIFAR-normalised inputs lose several points more
    assert 0.76 < accuracy < 0.86
    from mimlib.models import CIFAR, set_normalization

    wrong = extract(set_normalization(model, CIFAR), test, device="cpu")
    assert float((wrong.logits.argmax(1) == wrong.labels).float().mean()) < accuracy


def test_a_download_is_verified_and_a_missing_file_with_downloads_off_says_where(
        tmp_path, monkeypatch) -> None:
    key = "resnet20/cifar10"
    entry = PUBLISHED[key]
    with pytest.raises(DataError, match=entry.file_name):
        check_published(key, tmp_path, download=False)
    calls = []

    def tampered(url: str, timeout: float) -> io.BytesIO:  # a server that sends other bytes
        calls.append(url)
        response = io.BytesIO(b"not the published weights")
        response.headers = {}
        return response

    monkeypatch.setattr("mimlib.fetch.urllib.request.urlopen", tampered)
    with pytest.raises(DataError, match=f"(?s)fails its SHA-256 check.*expected {entry.sha256}"):
        load_published(key, cache_dir=tmp_path, download=True)
    assert calls == [entry.url]
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial one is left


def test_a_corrupt_or_foreign_file_under_the_pinned_name_is_refused(tmp_path) -> None:
    key = "resnet32/cifar10"
    (tmp_path / PUBLISHED[key].file_name).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="SHA-256"):
        check_published(key, tmp_path, download=False)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_published(key, cache_dir=tmp_path, download=False)


@pytest.mark.shared
def test_the_old_pickles_without_batch_norm_counters_load_as_torch_loads_them(tmp_path) -> None:
    path = _shared("resnet20/cifar10")
    shutil.copy(path, tmp_path / path.name)
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.endswith("num_batches_tracked") for k in state)
    reference = build_model("resnet20", 10)
    reference.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    ours = load_published("resnet20/cifar10", cache_dir=tmp_path, download=False)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference.eval()(x))


def test_unknown_keys_list_the_registry() -> None:
    with pytest.raises(ConfigError, match="resnet20/cifar10"):
        published_weights("resnet21/cifar10")


def test_the_papers_checkpoints_and_the_oe_authors_weights_are_registry_lookups() -> None:
    assert paper_weights("cifar10").key == "wrn-40-2/cifar10/crossentropy"
    assert paper_weights("cifar100").key == "wrn-40-2/cifar100/crossentropy"
    assert paper_weights("synthetic") is None
    assert published_oe_weights("cifar100", "wrn40_2").key == "wrn-40-2/cifar100/oe"
    assert published_oe_weights("cifar10", "resnet20") is None
