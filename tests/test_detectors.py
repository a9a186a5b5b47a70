import numpy as np
import pytest
import torch

from mimlib import TABLE1_DETECTORS, FittedDetectors, build_model, extract
from mimlib.data import load_id, load_ood
from mimlib.images import normalize
from mimlib import detectors
from mimlib.detectors import DetectorOptions, DetectorSpec, check_detectors, register_detector
from mimlib.errors import ConfigError
from mimlib.companion.results.store import canonical_json


@pytest.fixture(scope="module")
def setting():
    torch.manual_seed(0)
    model = build_model("small_cnn", 6).eval()
    train = load_id("synthetic", "train").subset(300)
    test = load_id("synthetic", "test").subset(100)
    ood = load_ood("synthetic_textures").subset(80)
    return model, train, test, ood


def test_extract_is_one_forward_pass_of_features_and_head(setting) -> None:
    model, _, test, _ = setting
    reps = extract(model, test, batch_size=32, device="cpu")
    with torch.no_grad():
        x = normalize(test.images)
        torch.testing.assert_close(reps.features, model.features(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(reps.logits, model(x), atol=1e-5, rtol=1e-5)
    assert torch.equal(reps.labels, test.labels)


def test_a_torchvision_classifier_is_fine_tuned_and_scored_as_it_is() -> None:
    """MIM and every detector on a model without mimlib's features(): torchvision's ResNet-18,
    whose penultimate features are read at its head (fc) in the same forward pass."""
    import torchvision

    from mimlib import mim_finetune

    torch.manual_seed(0)
    train = load_id("synthetic", "train").subset(64)
    test, ood = load_id("synthetic", "test").subset(32), load_ood("synthetic_textures").subset(32)
    model = torchvision.models.resnet18(num_classes=train.num_classes)
    model = mim_finetune(model, train, k=5, steps=2, lr=1e-3, device="cpu").model
    test_reps, ood_reps = extract(model, test, device="cpu"), extract(model, ood, device="cpu")
    assert test_reps.features.shape == (32, 512) and test_reps.logits.shape == (32, 6)
    fitted = FittedDetectors(TABLE1_DETECTORS, model, extract(model, train, device="cpu"),
                             DetectorOptions(mahalanobis_eps=0.002), device="cpu")
    for name in TABLE1_DETECTORS:
        scores = fitted.score(name, ood_reps, ood)
        assert scores.shape == (32,) and np.isfinite(scores).all(), name
    msp = test_reps.logits.softmax(1).amax(1).double().numpy()
    np.testing.assert_allclose(fitted.score("MSP", test_reps), msp, rtol=1e-6)


def test_every_table1_detector_gives_finite_scores_per_sample(setting) -> None:
    model, train, test, ood = setting
    fitted = FittedDetectors(TABLE1_DETECTORS, model, extract(model, train, device="cpu"),
                             DetectorOptions(mahalanobis_eps=0.002), device="cpu")
    test_reps, ood_reps = extract(model, test, device="cpu"), extract(model, ood, device="cpu")
    for name in TABLE1_DETECTORS:
        for reps, images in ((test_reps, test), (ood_reps, ood)):
            scores = fitted.score(name, reps, images)
            assert scores.shape == (len(images),) and np.isfinite(scores).all(), name
    assert all(p.grad is None for p in model.parameters())  # gradient detectors leave no .grad


def test_scores_follow_the_msp_convention(setting) -> None:
    model, train, test, _ = setting
    reps = extract(model, test, device="cpu")
    fitted = FittedDetectors(("MSP", "Energy", "MaxLogit"), model, reps, device="cpu")
    np.testing.assert_allclose(fitted.score("MSP", reps), reps.logits.softmax(1).amax(1).numpy(),
                               rtol=1e-6)
    np.testing.assert_allclose(fitted.score("Energy", reps),
                               torch.logsumexp(reps.logits, 1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(fitted.score("MaxLogit", reps), reps.logits.amax(1).numpy(),
                               rtol=1e-6)


def test_features_as_logits_reproduces_the_authors_cifar100_quirk(setting) -> None:
    model, _, test, _ = setting
    reps = extract(model, test, device="cpu")
    quirky = FittedDetectors(("Energy",), model, reps, DetectorOptions(
        features_as_logits=("Energy",)), device="cpu")
    np.testing.assert_allclose(quirky.score("Energy", reps),
                               torch.logsumexp(reps.features, 1).numpy(), rtol=1e-5)


def test_mahalanobis_with_a_vanishing_perturbation_is_mahalanobis_on_the_features(setting) -> None:
    """The perturbing Mahalanobis (pytorch-ood's MahalanobisODIN, fitted with its public
    fit_features) holds the same Gaussians as the one on cached features."""
    model, train, test, _ = setting
    fit, reps = extract(model, train, device="cpu"), extract(model, test, device="cpu")
    cached = FittedDetectors(("Mahalanobis",), model, fit, device="cpu")
    perturbing = FittedDetectors(("Mahalanobis",), model, fit,
                                 DetectorOptions(mahalanobis_eps=1e-30), device="cpu")
    np.testing.assert_allclose(perturbing.score("Mahalanobis", reps, test),
                               cached.score("Mahalanobis", reps), rtol=1e-5)


def test_a_new_detector_is_one_row_of_the_table(setting, monkeypatch) -> None:
    """Registering one row is all a detector needs: its name is accepted, it is fitted on the
    ID representations and scores others, and its options go into its store key."""
    monkeypatch.setattr(detectors, "DETECTORS", dict(detectors.DETECTORS))  # undone after
    model, train, test, _ = setting

    def clipped_norm(fit):  # the feature norm, clipped at the p-quantile of the ID norms
        clip = torch.quantile(fit.reps.features.norm(dim=1), fit.options.dice_p)
        return lambda z: -z.norm(dim=1).clamp(max=clip)

    register_detector(DetectorSpec("ClippedNorm", "features", clipped_norm, fitted=True,
                                   options={"p": "dice_p"}))
    assert check_detectors(["MSP", "ClippedNorm"]) == ("MSP", "ClippedNorm")
    assert DetectorOptions(dice_p=0.5).relevant("ClippedNorm") == {"p": 0.5}
    assert detectors.detector_spec("ClippedNorm").fitted
    fit, reps = extract(model, train, device="cpu"), extract(model, test, device="cpu")
    fitted = FittedDetectors(("MSP", "ClippedNorm"), model, fit, DetectorOptions(dice_p=0.5),
                             device="cpu")
    clip = torch.quantile(fit.features.norm(dim=1), 0.5)
    np.testing.assert_array_equal(fitted.score("ClippedNorm", reps),
                                  reps.features.norm(dim=1).clamp(max=clip).double().numpy())
    with pytest.raises(ConfigError, match="exists already"):
        register_detector(DetectorSpec("ClippedNorm", "features", clipped_norm))
    with pytest.raises(ConfigError, match="features_as_logits accepts"):
        DetectorOptions(features_as_logits=("ClippedNorm",))


def test_a_detector_row_names_only_real_options() -> None:
    with pytest.raises(ConfigError, match="no field"):
        DetectorSpec("Toy", "logits", lambda fit: None, options={"t": "toy_temperature"})
    with pytest.raises(ConfigError, match="reads logits, features or images"):
        DetectorSpec("Toy", "pixels", lambda fit: None)
    assert "ClippedNorm" not in detectors.DETECTORS  # the registration above was undone


def test_gradient_detectors_need_images(setting) -> None:
    model, train, test, _ = setting
    reps = extract(model, test, device="cpu")
    fitted = FittedDetectors(("ODIN",), model, reps, device="cpu")
    with pytest.raises(ConfigError, match="needs the images"):
        fitted.score("ODIN", reps)


@pytest.mark.parametrize("names", [("MSP", "OpenMax"), "MSP", [1]])
def test_unknown_detectors_are_errors(names) -> None:
    with pytest.raises(ConfigError):
        check_detectors(names)


@pytest.mark.parametrize("kwargs", [{"dice_p": 1.0}, {"vim_d": 0},
                                    {"features_as_logits": ("ViM",)}])
def test_bad_detector_options_are_errors(kwargs) -> None:
    with pytest.raises(ConfigError):
        DetectorOptions(**kwargs)


def test_a_fit_set_without_some_class_names_the_class_for_class_gaussians(setting) -> None:
    model, train, _, _ = setting
    reps = extract(model, train, device="cpu")
    keep = reps.labels != 3
    partial = type(reps)(reps.features[keep], reps.logits[keep], reps.labels[keep])
    for name in ("Mahalanobis", "RMD"):
        with pytest.raises(ConfigError, match=r"no image of class\(es\) \[3\] of 6.*train_limit"):
            FittedDetectors((name,), model, partial, device="cpu")
    FittedDetectors(("DICE", "ViM", "KL-Matching"), model, partial, device="cpu")  # not per class


def test_evaluation_precision_is_fp32_by_default_and_part_of_keys_where_it_acts(
        monkeypatch) -> None:
    from mimlib.companion.results import experiment, keys
    from mimlib.device import eval_precision

    with pytest.raises(ConfigError, match="eval_precision must be one of"):
        experiment.Setup(eval_precision="fp16")
    with pytest.raises(ConfigError, match="eval_precision must be one of"):
        with eval_precision(torch.device("cpu"), "fp16"):
            pass
    fp32 = experiment.Setup(eval_layout="contiguous")
    bf16 = experiment.Setup(eval_precision="bf16", eval_layout="contiguous")
    channels_last = experiment.Setup(eval_layout="channels_last")
    # fp32 contiguous evaluations (all entries stored before these settings) keep their keys;
    # any other way of evaluating is named in the key, on every device
    assert keys.precision_key(fp32) == {}
    assert keys.precision_key(bf16) == {"eval_precision": "bf16"}
    assert keys.precision_key(channels_last) == {"eval_layout": "channels_last"}
    monkeypatch.setattr(keys, "planned_device", lambda device: torch.device("cuda"))
    assert keys.precision_key(fp32) == {}
    assert keys.precision_key(bf16) == {"eval_precision": "bf16"}


#: What DetectorOptions.relevant gives each Table 1 detector under four sets of options, as the
#: store's keys hold it (canonical JSON, so 0 and 0.0 differ): these strings must never change.
PINNED_KEY_OPTIONS = {
    "default": ({}, {
        "MSP": '{"features_as_logits":false}', "ODIN": '{"eps":0.002,"temperature":1000.0}',
        "Mahalanobis": '{"eps":0.0}', "Entropy": '{"features_as_logits":false}',
        "Energy": '{"features_as_logits":false}', "MaxLogit": '{"features_as_logits":false}',
        "KL-Matching": "{}", "DICE": '{"p":0.65}', "RMD": "{}", "ViM": '{"d":64}'}),
    "faithful CIFAR-100": ({"mahalanobis_eps": 0.002, "features_as_logits": ("Entropy", "Energy")}, {
        "MSP": '{"features_as_logits":false}', "ODIN": '{"eps":0.002,"temperature":1000.0}',
        "Mahalanobis": '{"eps":0.002}', "Entropy": '{"features_as_logits":true}',
        "Energy": '{"features_as_logits":true}', "MaxLogit": '{"features_as_logits":false}',
        "KL-Matching": "{}", "DICE": '{"p":0.65}', "RMD": "{}", "ViM": '{"d":64}'}),
    "every option changed": ({"odin_eps": 0.01, "odin_temperature": 10.0, "mahalanobis_eps": 0.001,
                              "dice_p": 0.5, "vim_d": 3, "features_as_logits": ("MSP", "MaxLogit")}, {
        "MSP": '{"features_as_logits":true}', "ODIN": '{"eps":0.01,"temperature":10.0}',
        "Mahalanobis": '{"eps":0.001}', "Entropy": '{"features_as_logits":false}',
        "Energy": '{"features_as_logits":false}', "MaxLogit": '{"features_as_logits":true}',
        "KL-Matching": "{}", "DICE": '{"p":0.5}', "RMD": "{}", "ViM": '{"d":3}'}),
    "whole numbers": ({"odin_eps": 0, "odin_temperature": 1, "mahalanobis_eps": 0, "vim_d": 2}, {
        "MSP": '{"features_as_logits":false}', "ODIN": '{"eps":0,"temperature":1}',
        "Mahalanobis": '{"eps":0}', "Entropy": '{"features_as_logits":false}',
        "Energy": '{"features_as_logits":false}', "MaxLogit": '{"features_as_logits":false}',
        "KL-Matching": "{}", "DICE": '{"p":0.65}', "RMD": "{}", "ViM": '{"d":2}'}),
}


@pytest.mark.parametrize("case", PINNED_KEY_OPTIONS)
def test_the_options_in_each_detectors_store_key_are_pinned(case) -> None:
    """relevant() is each detector's part of its scores' store key: a change would orphan
    every stored score, so its output is pinned for every Table 1 detector."""
    kwargs, expected = PINNED_KEY_OPTIONS[case]
    options = DetectorOptions(**kwargs)
    assert {name: canonical_json(options.relevant(name)) for name in TABLE1_DETECTORS} == expected


def _pytorch_ood_own(name: str, model, head, train_loader):
    """pytorch-ood 0.4's detector ``name`` as its documentation builds it on a whole model
    (encoder = the model's penultimate features, the model's own linear head, fitted with its
    own ``fit`` on a loader of ID images) at the options DetectorOptions() gives it."""
    from pytorch_ood import detector as pod

    def maps(x):
        return model.features(x)[:, :, None, None]

    def on_maps(m):
        return head(m.flatten(1))

    built = {"KNN": lambda: pod.KNN(model.features, k=50),
             "ReAct": lambda: pod.ReAct(maps, on_maps, percentile=0.9),
             "ASH": lambda: pod.ASH(maps, on_maps, variant="ash-s", percentile=0.9),
             "SCALE": lambda: pod.SCALE(maps, on_maps, percentile=0.65),
             "GEN": lambda: pod.GEN(model, gamma=0.1),
             "fDBD": lambda: pod.fDBD(model.features, head),
             "NNGuide": lambda: pod.NNGuide(model.features, head, k=10)}[name]()
    if name in ("KNN", "ReAct", "fDBD", "NNGuide"):
        built.fit(train_loader)
    return built


@pytest.mark.parametrize("name", detectors.NEWER_DETECTORS)
def test_each_newer_detector_scores_as_pytorch_ood_does_on_the_whole_model(setting, name) -> None:
    """Fitted on cached features and a copy of the head, each newer detector gives the scores
    of pytorch-ood's own detector run on the images through the model (negated: MSP's
    convention), fitted on the same ID training images."""
    from torch.utils.data import DataLoader, TensorDataset

    from mimlib.models import linear_head

    model, train, test, ood = setting
    head = linear_head(model)
    loader = DataLoader(TensorDataset(normalize(train.images), train.labels), batch_size=64)
    own = _pytorch_ood_own(name, model, head, loader)
    ours = FittedDetectors((name,), model, extract(model, train, device="cpu"), device="cpu")
    for images in (test, ood):
        with torch.no_grad():
            expected = -own.predict(normalize(images.images)).double().numpy()
        got = ours.score(name, extract(model, images, device="cpu"))
        assert got.shape == (len(images),) and np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.std(got) > 0  # a constant score would pass any comparison


def test_the_newer_detectors_are_rows_beside_table1s_ten_and_keyed_by_their_options() -> None:
    """The paper's ten stay Table 1's rows; each newer one's store key holds exactly the
    options it reads, at its paper's or pytorch-ood's default."""
    from pytorch_ood.detector import ASH

    assert detectors.NEWER_DETECTORS == ("KNN", "ReAct", "ASH", "SCALE", "GEN", "fDBD",
                                         "NNGuide")
    assert len(TABLE1_DETECTORS) == 10 and not set(TABLE1_DETECTORS) & set(
        detectors.NEWER_DETECTORS)
    assert set(detectors.ASH_VARIANTS) == set(ASH.variants)
    keys = {name: canonical_json(DetectorOptions().relevant(name))
            for name in detectors.NEWER_DETECTORS}
    assert keys == {"KNN": '{"k":50}', "ReAct": '{"percentile":0.9}',
                    "ASH": '{"percentile":0.9,"variant":"ash-s"}',
                    "SCALE": '{"percentile":0.65}', "GEN": '{"gamma":0.1}', "fDBD": "{}",
                    "NNGuide": '{"k":10}'}
    changed = DetectorOptions(knn_k=5, react_percentile=0.95, ash_variant="ash-b",
                              ash_percentile=0.8, scale_percentile=0.85, gen_gamma=1,
                              nnguide_k=3)
    assert {name: changed.relevant(name) for name in detectors.NEWER_DETECTORS} == {
        "KNN": {"k": 5}, "ReAct": {"percentile": 0.95},
        "ASH": {"variant": "ash-b", "percentile": 0.8}, "SCALE": {"percentile": 0.85},
        "GEN": {"gamma": 1}, "fDBD": {}, "NNGuide": {"k": 3}}
    # options of the newer detectors change no key of Table 1's ten
    assert all(changed.relevant(n) == DetectorOptions().relevant(n) for n in TABLE1_DETECTORS)
    assert {n for n in detectors.NEWER_DETECTORS if detectors.DETECTORS[n].fitted} == {
        "KNN", "ReAct", "fDBD", "NNGuide"}
    assert detectors.FITTED_DETECTORS == ("Mahalanobis", "KL-Matching", "DICE", "RMD", "ViM")


@pytest.mark.parametrize("kwargs", [{"knn_k": 0}, {"ash_variant": "ash-x"},
                                    {"ash_percentile": 1.0}, {"react_percentile": 1.5},
                                    {"gen_gamma": 0}, {"nnguide_k": 2.5}])
def test_bad_options_of_the_newer_detectors_are_errors(kwargs) -> None:
    with pytest.raises(ConfigError):
        DetectorOptions(**kwargs)
