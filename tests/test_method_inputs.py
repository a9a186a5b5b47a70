"""The method's public functions refuse bad inputs by name: a setting that would give NaN
images, a batch of the wrong dtype or shape, a set without usable labels, a zero batch size.
Each case raises mimlib's own error, saying what was given and what to do."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mimlib import (FittedDetectors, ImageSet, PostMixAugment, build_model, extract, load_ood,
                    mim_finetune, multi_input_mixup, normalize, oe_finetune, ood_metrics,
                    pretrain)
from mimlib.data import DataOptions, load_id
from mimlib.detectors import DetectorOptions
from mimlib.errors import ConfigError, DataError
from mimlib.metrics import METRIC_KEYS
from mimlib.train import adapt
from mimlib.train_config import AdaptConfig, MIMConfig, OEConfig

NAN, INF = math.nan, math.inf


@pytest.fixture(scope="module")
def tiny_train() -> ImageSet:
    return load_id("synthetic", "train").subset(64)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return normalize(load_id("synthetic", "train").subset(8).images)


# --------------------------------------------------------------------------- mixing

def test_dirichlet_mixing_refuses_an_infinite_alpha(batch) -> None:
    """alpha = inf passed the old "> 0" check and returned all-NaN mixes."""
    with pytest.raises(ConfigError, match=r"alpha \(Dirichlet concentration\) must be a finite "
                                          r"number > 0, got inf"):
        multi_input_mixup(batch, 3, weights="dirichlet", alpha=INF)


def test_mixing_a_uint8_batch_says_to_normalise_it_first() -> None:
    images = load_id("synthetic", "train").subset(8).images
    with pytest.raises(ConfigError, match=r"floating-point batch, got torch.uint8 of shape "
                                          r"\(8, 3, 32, 32\).*mimlib.normalize"):
        multi_input_mixup(images, 3)


def test_mixing_something_other_than_a_tensor_is_refused(batch) -> None:
    with pytest.raises(ConfigError, match="a torch.Tensor batch, got ndarray"):
        multi_input_mixup(batch.numpy(), 3)


# --------------------------------------------------------------------------- augmentation

@pytest.mark.parametrize("setting,value,message", [
    ("brightness", NAN, "brightness jitter must be a finite number >= 0, got nan"),
    ("contrast", INF, "contrast jitter must be a finite number >= 0, got inf"),
    ("saturation", NAN, "saturation jitter must be a finite number >= 0, got nan"),
    ("hue", NAN, "hue jitter must be a finite number in [0, 0.5], got nan"),
    ("degrees", INF, "degrees (rotation range) must be a finite number >= 0, got inf"),
    ("degrees", NAN, "degrees (rotation range) must be a finite number >= 0, got nan"),
    ("translate", NAN, "translate must be a finite number in [0, 1], got nan"),
    ("colour", "yes", "colour must be true or false, got 'yes'"),
    ("quantize", 1, "quantize must be true or false, got 1"),
    ("mean", (NAN, 0.5, 0.5), "finite means and stds"),
    ("std", (INF, 0.2, 0.2), "finite means and stds"),
])
def test_augmentation_settings_that_give_nan_or_black_images_are_refused(setting, value,
                                                                         message) -> None:
    """brightness = nan made NaN images, degrees = inf black ones (a NaN sampling grid)."""
    with pytest.raises(ConfigError) as err:
        PostMixAugment(**{setting: value})
    assert message in str(err.value)


@pytest.mark.parametrize("shape,dtype,given", [
    ((8, 3, 32, 32), torch.uint8, "torch.uint8 of shape (8, 3, 32, 32)"),
    ((3, 32, 32), torch.float32, "torch.float32 of shape (3, 32, 32)"),
    ((8, 4, 32, 32), torch.float32, "torch.float32 of shape (8, 4, 32, 32)"),
])
def test_augmenting_a_batch_of_the_wrong_dtype_or_shape_is_refused(shape, dtype, given) -> None:
    x = torch.zeros(shape, dtype=dtype)
    aug = PostMixAugment()
    for call in (lambda: aug(x), lambda: aug.apply_params(x, aug.sample(8, 32, 32))):
        with pytest.raises(ConfigError) as err:
            call()
        assert f"a normalised floating-point batch (N, 3, H, W), got {given}" in str(err.value)
        assert "mimlib.normalize" in str(err.value)


# --------------------------------------------------------------------------- training

def _unchanged(model: torch.nn.Module, before: dict) -> bool:
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_fine_tuning_on_an_ood_set_says_it_has_no_labels() -> None:
    """An OOD set (labels -1) stopped in ``IndexError: Target -1 is out of bounds``."""
    model = build_model("small_cnn", 6)
    before = copy.deepcopy(model.state_dict())
    ood = load_ood("gaussian").subset(32)
    for train in (mim_finetune, pretrain):
        with pytest.raises(DataError) as err:
            train(model, ood, steps=1, batch_size=8, device="cpu")
        assert "gaussian has labels from -1 to -1, outside 0..5 (the model's 6 classes)" \
            in str(err.value)
        assert "an OOD set" in str(err.value) and "mimlib.load_id" in str(err.value)
    assert _unchanged(model, before)


def test_fine_tuning_on_labels_beyond_the_models_classes_is_refused(tiny_train) -> None:
    labels = tiny_train.labels.clone()
    labels[5] = 6
    bad = ImageSet("relabelled", tiny_train.images, labels)
    with pytest.raises(DataError, match=r"relabelled has labels from 0 to 6, outside 0..5 "
                                        r"\(the model's 6 classes\)"):
        mim_finetune(build_model("small_cnn", 6), bad, steps=1, batch_size=8, device="cpu")


def test_outlier_exposure_and_adaptation_check_their_sets_too(tiny_train) -> None:
    model = build_model("small_cnn", 6)
    ood = load_ood("gaussian").subset(32)
    with pytest.raises(DataError, match="gaussian has labels from -1 to -1"):
        oe_finetune(model, ood, ood, steps=1, device="cpu")
    with pytest.raises(DataError, match="gaussian has labels from -1 to -1"):
        adapt(model, ood, lambda m: 0.0, device="cpu")
    with pytest.raises(ConfigError, match="outliers must be an ImageSet .*, got Tensor"):
        oe_finetune(model, tiny_train, ood.images, steps=1, device="cpu")
    with pytest.raises(ConfigError, match="accuracy must be a function of the model, got 0.5"):
        adapt(model, tiny_train, 0.5, device="cpu")


@pytest.mark.parametrize("call,message", [
    (lambda m, s: mim_finetune(m, s.images, steps=1),
     "id_train must be an ImageSet (mimlib.load_id gives one), got Tensor"),
    (lambda m, s: mim_finetune("wrn40_2", s, steps=1), "model must be a torch.nn.Module, got str"),
    (lambda m, s: mim_finetune(m, s, OEConfig()), "mim_finetune takes its settings as MIMConfig, got OEConfig"),
    (lambda m, s: pretrain(m, s, MIMConfig()), "pretrain takes its settings as PretrainConfig, got MIMConfig"),
    (lambda m, s: adapt(m, s, lambda _: 0.0, MIMConfig()),
     "adapt takes its settings as AdaptConfig, got MIMConfig"),
    (lambda m, s: mim_finetune(m, s, steps=1, on_eval=True),
     "on_eval must be a function of (model, step), got True"),
])
def test_training_with_arguments_of_the_wrong_kind_says_what_it_takes(tiny_train, call,
                                                                      message) -> None:
    with pytest.raises(ConfigError) as err:
        call(build_model("small_cnn", 6), tiny_train)
    assert message in str(err.value)


@pytest.mark.parametrize("config,setting,value,message", [
    (MIMConfig, "nesterov", "no", "nesterov must be true or false, got 'no'"),
    (MIMConfig, "shuffle", 0, "shuffle must be true or false, got 0"),
    (MIMConfig, "compile", "yes", "compile must be true or false, got 'yes'"),
    (MIMConfig, "seed", -1, "seed must be a whole number >= 0, got -1"),
    (MIMConfig, "seed", 1.5, "seed must be a whole number >= 0, got 1.5"),
    (MIMConfig, "alpha", INF, "alpha must be a finite number > 0, got inf"),
    (MIMConfig, "aug_colour", "off", "aug_colour must be true or false, got 'off'"),
    (MIMConfig, "aug_interpolation", "cubic", "aug_interpolation must be one of"),
    (OEConfig, "lam", NAN, "lam must be a finite number >= 0, got nan"),
    (AdaptConfig, "max_epochs", INF, "max_epochs must be a whole number >= 1, got inf"),
])
def test_training_configs_refuse_non_finite_and_ill_typed_settings(config, setting, value,
                                                                   message) -> None:
    with pytest.raises(ConfigError) as err:
        config(**{setting: value})
    assert message in str(err.value)


# --------------------------------------------------------------------------- detectors

@pytest.fixture(scope="module")
def fitted_setting(tiny_train):
    model = build_model("small_cnn", 6).eval()
    return model, extract(model, tiny_train, device="cpu")


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, NAN])
def test_extract_refuses_a_batch_size_that_is_not_a_whole_number(fitted_setting, tiny_train,
                                                                  batch_size) -> None:
    """batch_size = 0 stopped in ``ValueError: range() arg 3 must not be zero``."""
    with pytest.raises(ConfigError, match=rf"batch_size must be a whole number >= 1, got "
                                          rf"{batch_size!r}"):
        extract(fitted_setting[0], tiny_train, batch_size=batch_size, device="cpu")


def test_extract_says_it_takes_an_image_set(fitted_setting, tiny_train) -> None:
    with pytest.raises(ConfigError, match="images must be an ImageSet .*, got Tensor"):
        extract(fitted_setting[0], tiny_train.images, device="cpu")


def test_fitted_detectors_check_their_arguments(fitted_setting, tiny_train) -> None:
    model, reps = fitted_setting
    with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1, got 0"):
        FittedDetectors(("ODIN",), model, reps, batch_size=0, device="cpu")
    with pytest.raises(ConfigError, match="options must be a DetectorOptions, got dict"):
        FittedDetectors(("MSP",), model, reps, {"odin_eps": 0.1}, device="cpu")
    with pytest.raises(ConfigError, match="fit must be the Representations extract gives, "
                                          "got Tensor"):
        FittedDetectors(("MSP",), model, reps.logits, device="cpu")
    fitted = FittedDetectors(("MSP",), model, reps, device="cpu")
    with pytest.raises(ConfigError, match="reps must be the Representations extract gives, "
                                          "got Tensor"):
        fitted.score("MSP", reps.logits)


@pytest.mark.parametrize("setting,value,message", [
    ("odin_eps", NAN, "odin_eps must be a finite number >= 0, got nan"),
    ("odin_eps", -0.1, "odin_eps must be a finite number >= 0, got -0.1"),
    ("odin_temperature", 0, "odin_temperature must be a finite number > 0, got 0"),
    ("odin_temperature", INF, "odin_temperature must be a finite number > 0, got inf"),
    ("mahalanobis_eps", INF, "mahalanobis_eps must be a finite number >= 0, got inf"),
    ("dice_p", NAN, "dice_p must be a finite number in [0, 1), got nan"),
    ("vim_d", 1.5, "vim_d must be a whole number >= 1, got 1.5"),
    ("features_as_logits", "MSP", "features_as_logits must be a list of detector names, "
                                  "got 'MSP'"),
])
def test_detector_options_refuse_non_finite_and_ill_typed_values(setting, value,
                                                                 message) -> None:
    with pytest.raises(ConfigError) as err:
        DetectorOptions(**{setting: value})
    assert message in str(err.value)


# --------------------------------------------------------------------------- metrics

def test_metrics_of_bf16_scores_are_those_of_the_same_scores_in_float32() -> None:
    """bf16 is one of extract's precisions; numpy has no bf16, so .numpy() raised TypeError."""
    g = torch.Generator().manual_seed(0)
    id_s = (torch.randn(200, generator=g) + 1).bfloat16()
    ood_s = torch.randn(300, generator=g).bfloat16()
    got = ood_metrics(id_s, ood_s)
    want = ood_metrics(id_s.float(), ood_s.float())
    assert got == want and set(got) == set(METRIC_KEYS) and 0.6 < got["auroc"] < 0.9


def test_metrics_of_scores_that_are_not_numbers_say_so() -> None:
    with pytest.raises(ConfigError, match=r"id_scores must be numbers, got \['high'\]"):
        ood_metrics(["high"], [0.1])


def test_metrics_refuse_a_non_finite_tpr() -> None:
    with pytest.raises(ConfigError, match=r"tpr must be a finite number in \(0, 1\], got nan"):
        ood_metrics([1.0, 2.0], [0.0], tpr=NAN)


# --------------------------------------------------------------------------- data loaders

@pytest.mark.parametrize("seed", [-1, 1.5])
def test_loading_an_ood_set_with_a_bad_seed_is_refused(seed) -> None:
    with pytest.raises(ConfigError, match=rf"seed must be a whole number >= 0, got {seed!r}"):
        load_ood("gaussian", seed=seed)


def test_a_subset_limit_must_be_a_whole_number() -> None:
    with pytest.raises(ConfigError, match=r"a subset limit must be a whole number >= 1, got 1.5"):
        load_ood("gaussian").subset(1.5)


def test_an_image_set_refuses_labels_that_are_not_int64() -> None:
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(DataError, match=r"bad: labels must be int64 \(N,\), got torch.float32 "
                                        r"\(2,\)"):
        ImageSet("bad", images, torch.zeros(2))


def test_data_options_refuse_a_download_flag_that_is_not_a_bool() -> None:
    with pytest.raises(ConfigError, match="download must be true or false, got 'no'"):
        DataOptions(download="no")


# --------------------------------------------------------------------------- models, normalisation

@pytest.mark.parametrize("architecture", ["SmallCNN", "DenseNet", "CifarResNet", "ResNet18",
                                          "WideResNet"])
@pytest.mark.parametrize("num_classes", [0, 1.5])
def test_every_architecture_refuses_a_class_count_that_is_not_a_whole_number_above_one(
        architecture, num_classes) -> None:
    """build_model checked it; the classes themselves built a 0-class head or raised a
    TypeError from torch.empty."""
    import mimlib

    with pytest.raises(ConfigError, match=rf"num_classes must be a whole number >= 2, got "
                                          rf"{num_classes!r}"):
        getattr(mimlib, architecture)(num_classes)


@pytest.mark.parametrize("shape,dtype,given", [
    ((3, 32, 32), torch.uint8, "torch.uint8 of shape (3, 32, 32)"),
    ((2, 4, 32, 32), torch.uint8, "torch.uint8 of shape (2, 4, 32, 32)"),
    ((2, 3, 32, 32), torch.int32, "torch.int32 of shape (2, 3, 32, 32)"),
])
def test_normalize_refuses_what_is_not_a_uint8_or_float_rgb_batch(shape, dtype, given) -> None:
    """A single (3, H, W) image came back as a batch of one; 4 channels raised a size error."""
    with pytest.raises(ConfigError) as err:
        normalize(torch.zeros(shape, dtype=dtype))
    assert f"normalize takes uint8 or [0, 1] float images (N, 3, H, W), got {given}" \
        in str(err.value)
