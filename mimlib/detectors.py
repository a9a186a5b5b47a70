"""OOD scores: the ten detectors of the paper's Table 1 (MSP and nine post-hoc baselines) and
seven newer ones (KNN, ReAct, ASH, SCALE, GEN, fDBD, NNGuide; not in the paper), through
pytorch-ood's detectors.

The model runs once per data set (:func:`extract`); every post-hoc detector is fitted on, and
scores, the cached features and logits with pytorch-ood's ``fit_features`` / ``predict_logits``
API. Each detector is one row of :data:`DETECTORS` (what it reads, whether it is fitted, the
options in its store key, how it is built); :func:`register_detector` adds one. Only detectors
that perturb their inputs along a gradient (ODIN, and Mahalanobis with
``mahalanobis_eps > 0`` as in pytorch-ood 0.1.6) run the network again. Scores are returned in the
MSP convention (higher = more in-distribution), i.e. pytorch-ood's outlier scores negated.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from .checks import interval, non_negative, positive, whole
from .images import ImageSet, iter_batches
from .device import (eval_precision, in_layout, out_of_memory_as_error, resolve_device,
                     resolve_layout)
from .errors import ConfigError
from .models import CIFAR, features_and_logits, input_normalization, linear_head


#: ASH's variants, as pytorch-ood's ``ASH.variants`` names them (prune and sharpen, prune,
#: binarise).
ASH_VARIANTS = ("ash-s", "ash-p", "ash-b")


@dataclass(frozen=True)
class DetectorOptions:
    """Hyperparameters of the baselines, as the authors set them (pytorch-ood defaults otherwise).

    ``features_as_logits`` lists detectors that are handed the penultimate features instead of
    the logits: the authors' CIFAR-100 notebook built ``Entropy(model.features)`` and
    ``EnergyBased(model.features)``; the faithful protocol repeats that.
    """

    odin_eps: float = 0.002
    odin_temperature: float = 1000.0
    mahalanobis_eps: float = 0.0  # 0.002 reproduces pytorch-ood 0.1.6's input perturbation
    dice_p: float = 0.65
    vim_d: int = 64
    features_as_logits: tuple[str, ...] = ()
    # the newer detectors (not in the paper), each at its paper's CIFAR setting where it states
    # one, else pytorch-ood 0.4's default
    knn_k: int = 50  # KNN paper, CIFAR-10 (pytorch-ood's default)
    react_percentile: float = 0.9  # ReAct paper: clip at the 90th percentile of ID activations
    ash_variant: str = "ash-s"  # ASH paper: ASH-S@90 is its best CIFAR row
    ash_percentile: float = 0.9
    scale_percentile: float = 0.65  # pytorch-ood's default
    gen_gamma: float = 0.1  # GEN paper's recommendation; M = every class (10 on CIFAR-10)
    nnguide_k: int = 10  # pytorch-ood's default; the bank is the whole fit set

    def __post_init__(self) -> None:
        non_negative(self.odin_eps, "odin_eps")
        positive(self.odin_temperature, "odin_temperature")
        non_negative(self.mahalanobis_eps, "mahalanobis_eps")
        interval(self.dice_p, "dice_p", 0, 1, open_high=True)
        whole(self.vim_d, "vim_d")
        whole(self.knn_k, "knn_k")
        whole(self.nnguide_k, "nnguide_k")
        interval(self.react_percentile, "react_percentile", 0, 1)
        interval(self.ash_percentile, "ash_percentile", 0, 1, open_high=True)
        interval(self.scale_percentile, "scale_percentile", 0, 1, open_high=True)
        positive(self.gen_gamma, "gen_gamma")
        if self.ash_variant not in ASH_VARIANTS:
            raise ConfigError(f"ash_variant must be one of {', '.join(ASH_VARIANTS)}, got "
                              f"{self.ash_variant!r}")
        if isinstance(self.features_as_logits, str):  # a name would be read letter by letter
            raise ConfigError(f"features_as_logits must be a list of detector names, got "
                              f"{self.features_as_logits!r}")
        swappable = [n for n, spec in DETECTORS.items() if spec.logits_from_features]
        unknown = set(self.features_as_logits) - set(swappable)
        if unknown:
            raise ConfigError(f"features_as_logits accepts {', '.join(swappable)}; got "
                              f"{sorted(unknown)}")

    def relevant(self, name: str) -> dict[str, object]:
        """The options that change detector ``name``'s scores (its part of a store key)."""
        spec = detector_spec(name)
        key: dict[str, object] = {k: getattr(self, option) for k, option in spec.options.items()}
        if spec.logits_from_features:
            key["features_as_logits"] = name in self.features_as_logits
        return key


@dataclass
class Representations:
    """Penultimate features and logits of one data set, on the CPU, float32."""

    features: Tensor
    logits: Tensor
    labels: Tensor


@dataclass(frozen=True)
class Fit:
    """What a detector is built from: the model, its linear head (float32, CPU), the ID
    representations it may be fitted on, the options, and where gradient detectors run."""

    model: nn.Module
    weight: Tensor
    bias: Tensor
    reps: Representations
    options: DetectorOptions
    device: torch.device
    batch_size: int


#: What a detector reads: logits, penultimate features, or the images (it perturbs them).
Reads = Literal["logits", "features", "images"]
#: A built detector: its input (as its spec reads it) to outlier scores (higher = more OOD).
Scorer = Callable[[Any], Tensor]


@dataclass(frozen=True)
class DetectorSpec:
    """One detector as one row: what it reads, whether it is fitted on ID data, which
    :class:`DetectorOptions` fields change its scores, and how it is built.

    ``options`` maps each name in the detector's store key to the option it holds;
    ``logits_from_features`` lets ``features_as_logits`` hand it the features; ``perturbation``
    names an option that, when non-zero, makes it read images instead of ``reads``.
    """

    name: str
    reads: Reads
    build: Callable[[Fit], Scorer]
    fitted: bool = False
    per_class: bool = False  # fits one Gaussian per class: the fit set needs every class
    options: Mapping[str, str] = field(default_factory=dict)
    logits_from_features: bool = False
    perturbation: str | None = None

    def __post_init__(self) -> None:
        known = {f.name for f in dataclasses.fields(DetectorOptions)}
        unknown = set(self.options.values()) - known | ({self.perturbation} - known - {None})
        if unknown:
            raise ConfigError(f"detector {self.name}: DetectorOptions has no field(s) "
                              f"{sorted(unknown)}")
        if self.reads not in ("logits", "features", "images"):
            raise ConfigError(f"detector {self.name} reads logits, features or images, "
                              f"not {self.reads!r}")
        if self.per_class and not self.fitted:
            raise ConfigError(f"detector {self.name} fits a Gaussian per class, so it is fitted")

    def depends_on(self, option: str) -> bool:
        """Whether the :class:`DetectorOptions` field ``option`` changes its scores."""
        return (option in self.options.values() or option == self.perturbation
                or (option == "features_as_logits" and self.logits_from_features))

    def reads_under(self, options: DetectorOptions) -> Reads:
        """What it reads under ``options``: images when its perturbation is switched on."""
        return "images" if self.perturbation and getattr(options, self.perturbation) else self.reads


def _pod() -> Any:
    """pytorch-ood's detectors, imported when first built (the import costs start-up time)."""
    from pytorch_ood import detector

    return detector


def _from_cifar_units(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """CIFAR-normalised inputs to the model's own normalisation.

    The perturbation is taken in the paper's CIFAR-normalised units (eps * CIFAR std in pixels)
    whatever the model's own statistics, so eps means the same for every model: the gradient
    detectors see a function of CIFAR-normalised inputs.
    """
    norm = input_normalization(model)
    return lambda u: u if norm == CIFAR else norm.apply(CIFAR.invert(u))


def _perturbing(fit: Fit, detector: Callable[[Tensor], Tensor]) -> Scorer:
    """Scores images with a detector that perturbs them along the input gradient, in batches."""
    def score(images: ImageSet) -> Tensor:
        fit.model.eval().to(fit.device)
        out = []
        with _frozen_parameters(fit.model), out_of_memory_as_error(fit.batch_size):
            for part in iter_batches(len(images), fit.batch_size):
                x = CIFAR.apply(images.images[part].to(fit.device))
                out.append(detector(x).detach().float().cpu())
        return torch.cat(out)
    return score


def _odin(fit: Fit) -> Scorer:
    model, to_model = fit.model, _from_cifar_units(fit.model)
    return _perturbing(fit, _pod().ODIN(lambda u: model(to_model(u)), eps=fit.options.odin_eps,
                                        temperature=fit.options.odin_temperature))


def _mahalanobis(fit: Fit) -> Scorer:
    """On the cached features, or (``mahalanobis_eps > 0``) on inputs perturbed first."""
    z, y = fit.reps.features, fit.reps.labels
    if not fit.options.mahalanobis_eps:
        return _pod().Mahalanobis(None).fit_features(z, y).predict_features
    model, to_model = fit.model, _from_cifar_units(fit.model)
    detector = _pod().MahalanobisODIN(lambda u: features_and_logits(model, to_model(u))[0],
                                      eps=fit.options.mahalanobis_eps)
    return _perturbing(fit, detector.fit_features(z.to(fit.device), y.to(fit.device)))


def _on_logits(make: Callable[[Any], Scorer]) -> Callable[[Fit], Scorer]:
    """A detector that is a function of one input's logits (nothing to fit)."""
    return lambda fit: make(_pod())


def _on_features(make: Callable[[Any, Fit], Any]) -> Callable[[Fit], Scorer]:
    """A pytorch-ood detector fitted on the ID features and labels, scoring features."""
    return lambda fit: make(_pod(), fit).fit_features(fit.reps.features,
                                                      fit.reps.labels).predict_features


def _kl_matching(fit: Fit) -> Scorer:
    return _pod().KLMatching(None).fit_logits(fit.reps.logits, fit.reps.labels).predict_logits


def _head(fit: Fit) -> nn.Linear:
    """The model's linear head as a module of its own (float32, CPU), for the detectors that
    take one."""
    head = nn.Linear(fit.weight.shape[1], fit.weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(fit.weight)
        head.bias.copy_(fit.bias)
    return head.requires_grad_(False)


def _on_pooled_maps(make: Callable[[Any, Fit, Callable[[Tensor], Tensor]], Any], *,
                    fitted: bool = False) -> Callable[[Fit], Scorer]:
    """A pytorch-ood feature-map detector (ReAct, ASH, SCALE) on the cached penultimate
    features, handed to it as 1 x 1 maps: each shapes the pooled features, as its paper does at
    the penultimate layer, then scores the linear head's logits (with the energy)."""
    def build(fit: Fit) -> Scorer:
        head = _head(fit)
        detector = make(_pod(), fit, lambda maps: head(maps.flatten(1)))
        if fitted:
            detector.fit_feature_maps(fit.reps.features[:, :, None, None], fit.reps.labels)
        return lambda z: detector.predict_feature_maps(z[:, :, None, None])
    return build


#: The rows of the paper's Table 1, in its order (MIM is MSP on the fine-tuned model).
_PAPER_ROWS = (
    DetectorSpec("MSP", "logits", _on_logits(lambda pod: pod.MaxSoftmax.score),
                 logits_from_features=True),
    DetectorSpec("ODIN", "images", _odin,
                 options={"eps": "odin_eps", "temperature": "odin_temperature"}),
    DetectorSpec("Mahalanobis", "features", _mahalanobis, fitted=True, per_class=True,
                 options={"eps": "mahalanobis_eps"}, perturbation="mahalanobis_eps"),
    DetectorSpec("Entropy", "logits", _on_logits(lambda pod: pod.Entropy(None).predict_logits),
                 logits_from_features=True),
    DetectorSpec("Energy", "logits", _on_logits(lambda pod: pod.EnergyBased(None).predict_logits),
                 logits_from_features=True),
    DetectorSpec("MaxLogit", "logits", _on_logits(lambda pod: pod.MaxLogit(None).predict_logits),
                 logits_from_features=True),
    DetectorSpec("KL-Matching", "logits", _kl_matching, fitted=True),
    DetectorSpec("DICE", "features", _on_features(
        lambda pod, fit: pod.DICE(None, w=fit.weight, b=fit.bias, p=fit.options.dice_p)),
        fitted=True, options={"p": "dice_p"}),
    DetectorSpec("RMD", "features", _on_features(lambda pod, fit: pod.RMD(None)), fitted=True,
                 per_class=True),
    DetectorSpec("ViM", "features", _on_features(
        lambda pod, fit: pod.ViM(None, d=min(fit.options.vim_d, fit.reps.features.shape[1] - 1),
                                 w=fit.weight, b=fit.bias)),
        fitted=True, options={"d": "vim_d"}),
)
#: Detectors of 2021-2024 that pytorch-ood 0.4 has and that work from the cached penultimate
#: features and the linear head (not in the paper). Each is fitted on the fit set (the ID
#: training set) where it is fitted at all; ASH, SCALE and GEN fit nothing.
_NEWER_ROWS = (
    DetectorSpec("KNN", "features", _on_features(
        lambda pod, fit: pod.KNN(None, k=fit.options.knn_k)), fitted=True,
        options={"k": "knn_k"}),
    DetectorSpec("ReAct", "features", _on_pooled_maps(
        lambda pod, fit, head: pod.ReAct(None, head, percentile=fit.options.react_percentile),
        fitted=True), fitted=True, options={"percentile": "react_percentile"}),
    DetectorSpec("ASH", "features", _on_pooled_maps(
        lambda pod, fit, head: pod.ASH(None, head, variant=fit.options.ash_variant,
                                       percentile=fit.options.ash_percentile)),
        options={"variant": "ash_variant", "percentile": "ash_percentile"}),
    DetectorSpec("SCALE", "features", _on_pooled_maps(
        lambda pod, fit, head: pod.SCALE(None, head, percentile=fit.options.scale_percentile)),
        options={"percentile": "scale_percentile"}),
    DetectorSpec("GEN", "logits", lambda fit: _pod().GEN(None, gamma=fit.options.gen_gamma)
                 .predict_logits, options={"gamma": "gen_gamma"}),
    DetectorSpec("fDBD", "features", _on_features(lambda pod, fit: pod.fDBD(None, _head(fit))),
                 fitted=True),
    DetectorSpec("NNGuide", "features", _on_features(
        lambda pod, fit: pod.NNGuide(None, _head(fit), k=fit.options.nnguide_k)), fitted=True,
        options={"k": "nnguide_k"}),
)
#: Every detector, one row each: Table 1's ten, then the newer ones. :func:`register_detector`
#: adds more.
DETECTORS: dict[str, DetectorSpec] = {spec.name: spec for spec in (*_PAPER_ROWS, *_NEWER_ROWS)}
#: The rows of the paper's Table 1, in its order.
TABLE1_DETECTORS = tuple(spec.name for spec in _PAPER_ROWS)
#: The newer detectors (not in the paper), shown below Table 1's rows.
NEWER_DETECTORS = tuple(spec.name for spec in _NEWER_ROWS)
#: Table 1's detectors fitted on ID data (the rest are functions of one input's logits or
#: gradients).
FITTED_DETECTORS = tuple(spec.name for spec in _PAPER_ROWS if spec.fitted)


def register_detector(spec: DetectorSpec) -> DetectorSpec:
    """Add a detector beside Table 1's: it is then checked, fitted, scored and keyed like them."""
    if spec.name in DETECTORS:
        raise ConfigError(f"a detector named {spec.name} exists already")
    DETECTORS[spec.name] = spec
    return spec


def detector_spec(name: str) -> DetectorSpec:
    """The row of detector ``name``, or :class:`ConfigError` naming the choices."""
    return DETECTORS[check_detectors((name,))[0]]


def check_detectors(names: object) -> tuple[str, ...]:
    """The names as a tuple, or :class:`ConfigError` naming the unknown ones."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):  # type: ignore[union-attr]
        raise ConfigError(f"detectors must be a list of names, got {names!r}")
    names = tuple(names)  # type: ignore[arg-type]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise ConfigError(f"unknown detector(s) {unknown}; choose from {list(DETECTORS)}")
    return names


@torch.no_grad()
def extract(model: nn.Module, images: ImageSet, *, batch_size: int = 512,
            device: str | torch.device = "auto", precision: str = "fp32",
            layout: str = "auto") -> Representations:
    """One forward pass over a data set: features (N, D) and logits (N, C), float32 on the CPU;
    ``precision`` is the forward pass's (fp32, or bf16 autocast) and ``layout`` its memory
    layout (auto: contiguous on a CPU, channels_last on CUDA; the model is contiguous after)."""
    _check_kind(images, ImageSet, "images", "an ImageSet (mimlib.load_id or load_ood gives one)")
    whole(batch_size, "batch_size")
    dev = resolve_device(device)
    model.eval().to(dev)
    feats, logits = [], []
    norm = input_normalization(model)
    with out_of_memory_as_error(batch_size), \
            in_layout(model, resolve_layout(dev, layout)) as memory_format:
        for part in iter_batches(len(images), batch_size):
            x = norm.apply(images.images[part].to(dev, non_blocking=True)).contiguous(
                memory_format=memory_format)
            with eval_precision(dev, precision):
                z, out = features_and_logits(model, x)
            feats.append(z.float().cpu())
            logits.append(out.float().cpu())
    return Representations(torch.cat(feats), torch.cat(logits), images.labels.clone())


class FittedDetectors:
    """Detectors fitted on one set of representations; scores any other set."""

    def __init__(self, names: tuple[str, ...], model: nn.Module, fit: Representations,
                 options: DetectorOptions = DetectorOptions(), *,
                 device: str | torch.device = "auto", batch_size: int = 256) -> None:
        self.names = check_detectors(names)
        _check_kind(options, DetectorOptions, "options", "a DetectorOptions")
        _check_kind(fit, Representations, "fit", "the Representations extract gives")
        whole(batch_size, "batch_size")
        self.options = options
        head = linear_head(model)
        w = head.weight.detach().float().cpu()
        b = (torch.zeros(head.out_features) if head.bias is None
             else head.bias.detach().float().cpu())
        per_class = {name for name in self.names if DETECTORS[name].per_class}
        absent = sorted(set(range(head.out_features)) - set(fit.labels.unique().tolist()))
        if per_class and absent:  # pytorch-ood would stop in a bare assertion
            raise ConfigError(f"{', '.join(sorted(per_class))} fit one Gaussian per class, "
                              f"and the fit set has no image of class(es) {absent[:10]} of "
                              f"{head.out_features}; fit on more images (a larger train_limit) "
                              "or leave these detectors out")
        inputs = Fit(model, w, b, fit, options, resolve_device(device), batch_size)
        self.scorers = {name: DETECTORS[name].build(inputs) for name in self.names}

    def score(self, name: str, reps: Representations, images: ImageSet | None = None) -> np.ndarray:
        """Confidence scores (higher = more ID) of one detector for a set, float64 (N,)."""
        if name not in self.scorers:
            raise ConfigError(f"{name} is not among the detectors fitted here {list(self.names)}")
        _check_kind(reps, Representations, "reps", "the Representations extract gives")
        reads = DETECTORS[name].reads_under(self.options)
        if reads == "images":
            x: object = _require(images, name)
        elif reads == "features" or name in self.options.features_as_logits:
            x = reps.features
        else:
            x = reps.logits
        return (-self.scorers[name](x).double()).cpu().numpy()


def _check_kind(value: object, kind: type, name: str, what: str) -> None:
    """Refuse an argument of another type, naming what it must be and what it is."""
    if not isinstance(value, kind):
        raise ConfigError(f"{name} must be {what}, got {type(value).__name__}")


def _require(images: ImageSet | None, name: str) -> ImageSet:
    if images is None:
        raise ConfigError(f"{name} perturbs its inputs, so it needs the images, not only features")
    return images


@contextlib.contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Input gradients only: parameters collect no .grad while gradient detectors run."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)

