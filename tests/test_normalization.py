"""Input normalisation belongs to the model: every loop feeds a model the statistics it states."""

import pytest
import torch
from torch import nn

from mimlib.data import load_id, load_ood
from mimlib.detectors import FittedDetectors, extract
from mimlib.errors import ConfigError
from mimlib.models import CIFAR, IMAGENET, Normalization, build_model, set_normalization
from mimlib.train import mim_finetune


class ExpectsImageNetStatistics(nn.Module):
    """A CIFAR-normalised model behind a first layer that expects ImageNet-normalised inputs:
    the same function of the pixels, stated with other statistics."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.linear = inner.linear  # the shared head, where features are read

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(CIFAR.apply(IMAGENET.invert(x)))


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    plain = build_model("resnet20", 6).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in plain.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    import copy

    wrapped = set_normalization(ExpectsImageNetStatistics(copy.deepcopy(plain)), IMAGENET)
    return plain, wrapped


def test_a_model_that_states_other_statistics_gives_the_same_logits_and_scores() -> None:
    plain, wrapped = _pair()
    test = load_id("synthetic", "test").subset(200, 0)
    a, b = extract(plain, test, device="cpu"), extract(wrapped, test, device="cpu")
    torch.testing.assert_close(b.logits, a.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.features, a.features, atol=1e-4, rtol=1e-4)
    # ODIN perturbs the inputs along a gradient: the same in pixels for both
    ood = load_ood("gaussian").subset(100, 0)
    scores = [FittedDetectors(("ODIN",), m, r, device="cpu").score(
        "ODIN", extract(m, ood, device="cpu"), ood) for m, r in ((plain, a), (wrapped, b))]
    torch.testing.assert_close(torch.from_numpy(scores[1]), torch.from_numpy(scores[0]),
                               atol=1e-4, rtol=1e-4)
    # fed CIFAR statistics instead, the wrapped model sees shifted inputs
    shifted = extract(set_normalization(wrapped, CIFAR), test, device="cpu")
    assert (shifted.logits - a.logits).abs().max() > 1e-2


def test_mim_fine_tuning_follows_the_models_statistics() -> None:
    train = load_id("synthetic", "train").subset(256, 0)
    x = torch.rand(8, 3, 32, 32)

    def tuned(model: nn.Module) -> nn.Module:
        return mim_finetune(model, train, k=4, steps=3, lr=1e-3, batch_size=32,
                            device="cpu").model

    plain, wrapped = _pair()
    _, misstated = _pair()
    set_normalization(misstated, CIFAR)  # the wrapped model, told the wrong statistics
    models = [tuned(m) for m in (plain, wrapped, misstated)]
    with torch.no_grad():
        reference = models[0](CIFAR.apply(x))
        same, wrong = (m(IMAGENET.apply(x)) for m in models[1:])
    # measured: 0.0014 apart (float rounding through three steps) against 1.6 when misstated
    assert (same - reference).abs().max() < 0.01
    assert (wrong - reference).abs().max() > 0.5


def test_normalisations_are_checked() -> None:
    with pytest.raises(ConfigError, match="3 means"):
        Normalization((0.5,), (0.2,))
    with pytest.raises(ConfigError, match="> 0"):
        Normalization((0.5,) * 3, (0.2, 0.0, 0.2))
    with pytest.raises(ConfigError, match="both"):
        set_normalization(nn.Linear(2, 2), (0.5,) * 3)
    assert Normalization(CIFAR.mean, CIFAR.std, "other name") == CIFAR
