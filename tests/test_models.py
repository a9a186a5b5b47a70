import pytest
import torch
from pytorch_ood.model import WideResNet as PodWideResNet

from mimlib import build_model, wrn40_2
from mimlib.checkpoints import (atomic_torch_save, load_checkpoint, load_published,
                                load_state_dict_file)
from mimlib.errors import CheckpointError, ConfigError, DataError
from mimlib.models import features_and_logits, find_linear_head, linear_head


def test_wrn40_2_loads_pytorch_oods_state_dict_strictly_and_gives_identical_outputs() -> None:
    torch.manual_seed(0)
    reference = PodWideResNet(num_classes=10, depth=40, widen_factor=2, drop_rate=0.3).eval()
    # make batch-norm statistics non-trivial so that a wrong layer order would show
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    ours = wrn40_2(10).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(reference.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.features(x), reference.features(x), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == 2243546


@pytest.mark.parametrize("arch,dim", [("wrn40_2", 128), ("resnet18", 512), ("small_cnn", 64)])
def test_every_architecture_exposes_features_and_head(arch: str, dim: int) -> None:
    model = build_model(arch, 7).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        z = model.features(x)
        assert z.shape == (2, dim) and model.feature_dim == dim
        torch.testing.assert_close(model(x), model.fc(z))


@pytest.mark.parametrize("build", ["resnet18", "mobilenet_v3_small"])  # fc; Sequential classifier
def test_features_are_read_at_the_head_of_other_classifiers(build: str) -> None:
    """torchvision's models have no features(x) -> (N, D): the penultimate features are the
    input of their last nn.Linear, read in the same forward pass as the logits."""
    import torchvision

    model = getattr(torchvision.models, build)(num_classes=5).eval()
    head = linear_head(model)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        z, logits = features_and_logits(model, x)
        torch.testing.assert_close(logits, model(x))
        torch.testing.assert_close(head(z), logits)
    assert z.shape == (3, head.in_features) and head.out_features == 5


def test_a_cifar_resnet_style_head_named_linear_is_found() -> None:
    class KuangliuStyle(torch.nn.Module):  # kuangliu/pytorch-cifar: self.linear
        def __init__(self) -> None:
            super().__init__()
            self.body, self.linear = torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(self.body(x).mean(dim=(2, 3)))

    model = KuangliuStyle()
    z, logits = features_and_logits(model, torch.randn(2, 3, 32, 32))
    assert linear_head(model) is model.linear and z.shape == (2, 8) and logits.shape == (2, 4)


def test_a_classifier_without_a_linear_head_is_an_error_that_says_what_to_do() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
    assert find_linear_head(model) is None
    with pytest.raises(ConfigError, match="Name your last layer fc"):
        features_and_logits(model, torch.randn(1, 3, 32, 32))

    class TwoPasses(torch.nn.Module):  # the head's input is ambiguous: an error, not a guess
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x.flatten(1)[:, :4]))

    with pytest.raises(ConfigError, match="ran 2 times"):
        features_and_logits(TwoPasses(), torch.randn(1, 3, 32, 32))
    for arch in ("wrn40_2", "resnet18", "small_cnn"):  # mimlib's: the head is fc
        model = build_model(arch, 3)
        assert linear_head(model) is model.fc


@pytest.mark.parametrize("arch,classes", [("vgg16", 10), ("small_cnn", 1), ("wrn40_2", 2.5)])
def test_bad_architecture_requests_are_errors(arch: str, classes: object) -> None:
    with pytest.raises(ConfigError):
        build_model(arch, classes)  # type: ignore[arg-type]


def test_checkpoint_round_trip_and_errors(tmp_path) -> None:
    model = build_model("small_cnn", 5)
    path = tmp_path / "model.pt"
    atomic_torch_save(model.state_dict(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left
    loaded = load_checkpoint(build_model("small_cnn", 5), path)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="another number of classes"):
        load_checkpoint(build_model("small_cnn", 6), path)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(build_model("resnet18", 5), path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(build_model("small_cnn", 5), truncated)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_state_dict_file(path, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(build_model("small_cnn", 5), tmp_path / "absent.pt")


def test_checkpoints_refuse_pickled_code(tmp_path) -> None:
    class Payload:
        def __reduce__(self):  # would run code if loaded with weights_only=False
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"w": Payload()}, path)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_state_dict_file(path)


def test_published_checkpoints_need_a_download_or_a_verified_cache(tmp_path) -> None:
    with pytest.raises(DataError, match="downloads are switched off"):
        load_published("wrn-40-2/cifar10/crossentropy", cache_dir=tmp_path, download=False)
    from pytorch_ood.model import get_model_info

    entry = get_model_info("wrn-40-2/cifar10/crossentropy")
    (tmp_path / entry.file_name).write_bytes(b"not the published weights")
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_published("wrn-40-2/cifar10/crossentropy", cache_dir=tmp_path, download=False)
    with pytest.raises(ConfigError, match="unknown published checkpoint"):
        load_published("wrn-40-2/mnist/nothing", cache_dir=tmp_path, download=False)


def test_a_failed_download_says_what_to_do(tmp_path, monkeypatch) -> None:
    import urllib.error

    def offline(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("mimlib.fetch.urllib.request.urlopen", offline)
    with pytest.raises(DataError, match=r"(?s)could not download weights wrn-40-2/cifar10/"
                                        r"crossentropy from https://.*Name or service not known"
                                        r".*put it at: " + str(tmp_path)):
        load_published("wrn-40-2/cifar10/crossentropy", cache_dir=tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


def test_published_checkpoint_loads_into_mimlibs_wrn_when_cached(tmp_path, monkeypatch) -> None:
    """A cached file whose SHA-256 the registry pins loads with weights_only into wrn40_2."""
    import hashlib

    import dataclasses

    from mimlib.models import PUBLISHED

    state = wrn40_2(10).state_dict()
    path = tmp_path / "weights.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # DataParallel prefix
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    key = "wrn-40-2/cifar10/crossentropy"
    monkeypatch.setitem(PUBLISHED, key, dataclasses.replace(PUBLISHED[key], sha256=digest))
    path.rename(tmp_path / PUBLISHED[key].file_name)
    model = load_published("wrn-40-2/cifar10/crossentropy", cache_dir=tmp_path, download=False)
    assert not model.training
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v)
