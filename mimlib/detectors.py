"""OOD scores: MSP and the ten baselines of the paper's Table 1, through pytorch-ood's detectors.

The model runs once per data set (:func:`extract`); every post-hoc detector is fitted on, and
scores, the cached features and logits with pytorch-ood's ``fit_features`` / ``predict_logits``
API. Only detectors that perturb their inputs along a gradient (ODIN, and Mahalanobis with
``mahalanobis_eps > 0`` as in pytorch-ood 0.1.6) run the network again. Scores are returned in the
MSP convention (higher = more in-distribution), i.e. pytorch-ood's outlier scores negated.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from .data import ImageSet, iter_batches
from .device import (eval_precision, in_layout, out_of_memory_as_error, resolve_device,
                     resolve_layout)
from .errors import ConfigError
from .models import CIFAR, features_and_logits, input_normalization, linear_head

#: The rows of the paper's Table 1 (MIM is MSP on the fine-tuned model).
TABLE1_DETECTORS = ("MSP", "ODIN", "Mahalanobis", "Entropy", "Energy", "MaxLogit", "KL-Matching",
                    "DICE", "RMD", "ViM")
#: Detectors fitted on ID data (the rest are functions of one input's logits or gradients).
FITTED_DETECTORS = ("KL-Matching", "Mahalanobis", "DICE", "RMD", "ViM")


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

    def __post_init__(self) -> None:
        unknown = set(self.features_as_logits) - {"Entropy", "Energy", "MaxLogit", "MSP"}
        if unknown:
            raise ConfigError(f"features_as_logits accepts Entropy, Energy, MaxLogit, MSP; got "
                              f"{sorted(unknown)}")
        if not 0 <= self.dice_p < 1:
            raise ConfigError(f"dice_p must lie in [0, 1), got {self.dice_p}")
        if self.vim_d < 1:
            raise ConfigError(f"vim_d must be >= 1, got {self.vim_d}")

    def relevant(self, name: str) -> dict[str, object]:
        """The options that change detector ``name``'s scores (its part of a store key)."""
        if name in ("MSP", "Entropy", "Energy", "MaxLogit"):
            return {"features_as_logits": name in self.features_as_logits}
        return {"ODIN": {"eps": self.odin_eps, "temperature": self.odin_temperature},
                "Mahalanobis": {"eps": self.mahalanobis_eps}, "DICE": {"p": self.dice_p},
                "ViM": {"d": self.vim_d}}.get(name, {})


@dataclass
class Representations:
    """Penultimate features and logits of one data set, on the CPU, float32."""

    features: Tensor
    logits: Tensor
    labels: Tensor


def check_detectors(names: object) -> tuple[str, ...]:
    """The names as a tuple, or :class:`ConfigError` naming the unknown ones."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):  # type: ignore[union-attr]
        raise ConfigError(f"detectors must be a list of names, got {names!r}")
    names = tuple(names)  # type: ignore[arg-type]
    unknown = [n for n in names if n not in TABLE1_DETECTORS]
    if unknown:
        raise ConfigError(f"unknown detector(s) {unknown}; choose from {list(TABLE1_DETECTORS)}")
    return names


@torch.no_grad()
def extract(model: nn.Module, images: ImageSet, *, batch_size: int = 512,
            device: str | torch.device = "auto", precision: str = "fp32",
            layout: str = "auto") -> Representations:
    """One forward pass over a data set: features (N, D) and logits (N, C), float32 on the CPU;
    ``precision`` is the forward pass's (fp32, or bf16 autocast) and ``layout`` its memory
    layout (auto: the faster one on this machine, measured; the model is contiguous after)."""
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
        from pytorch_ood import detector as pod

        self.names = check_detectors(names)
        self.model, self.options = model, options
        self.device, self.batch_size = resolve_device(device), batch_size
        head = linear_head(model)
        w = head.weight.detach().float().cpu()
        b = (torch.zeros(head.out_features) if head.bias is None
             else head.bias.detach().float().cpu())
        z, y = fit.features, fit.labels
        class_fitted = {"Mahalanobis", "RMD"} & set(self.names)  # a Gaussian per class
        absent = sorted(set(range(head.out_features)) - set(y.unique().tolist()))
        if class_fitted and absent:  # pytorch-ood would stop in a bare assertion
            raise ConfigError(f"{', '.join(sorted(class_fitted))} fit one Gaussian per class, "
                              f"and the fit set has no image of class(es) {absent[:10]} of "
                              f"{head.out_features}; fit on more images (a larger train_limit) "
                              "or leave these detectors out")
        self.detectors: dict[str, object] = {}
        for name in self.names:
            if name == "KL-Matching":
                self.detectors[name] = pod.KLMatching(None).fit_logits(fit.logits, y)
            elif name == "Mahalanobis":
                self.detectors[name] = pod.Mahalanobis(None).fit_features(z, y)
            elif name == "RMD":
                self.detectors[name] = pod.RMD(None).fit_features(z, y)
            elif name == "DICE":
                self.detectors[name] = pod.DICE(None, w=w, b=b, p=options.dice_p).fit_features(z, y)
            elif name == "ViM":
                d = min(options.vim_d, z.shape[1] - 1)
                self.detectors[name] = pod.ViM(None, d=d, w=w, b=b).fit_features(z, y)

    def score(self, name: str, reps: Representations, images: ImageSet | None = None) -> np.ndarray:
        """Confidence scores (higher = more ID) of one detector for a set, float64 (N,)."""
        from pytorch_ood import detector as pod

        opts = self.options
        logits = reps.features if name in opts.features_as_logits else reps.logits
        if name == "MSP":
            outlier = pod.MaxSoftmax.score(logits)
        elif name == "Entropy":
            outlier = pod.Entropy(None).predict_logits(logits)
        elif name == "Energy":
            outlier = pod.EnergyBased(None).predict_logits(logits)
        elif name == "MaxLogit":
            outlier = pod.MaxLogit(None).predict_logits(logits)
        elif name == "KL-Matching":
            outlier = self.detectors[name].predict_logits(logits)
        elif name in ("RMD", "DICE", "ViM"):
            outlier = self.detectors[name].predict_features(reps.features)
        elif name == "Mahalanobis" and opts.mahalanobis_eps == 0:
            outlier = self.detectors[name].predict_features(reps.features)
        else:  # ODIN, or Mahalanobis with input perturbation: gradients w.r.t. the inputs
            outlier = self._gradient_scores(name, _require(images, name))
        return (-outlier.double()).cpu().numpy()

    def _gradient_scores(self, name: str, images: ImageSet) -> Tensor:
        from pytorch_ood import detector as pod

        model = self.model.eval().to(self.device)
        opts = self.options
        norm = input_normalization(model)
        # The perturbation is taken in the paper's CIFAR-normalised units (eps * CIFAR std in
        # pixels) whatever the model's own statistics, so eps means the same for every model:
        # the detectors see a function of CIFAR-normalised inputs.
        def to_model(u: Tensor) -> Tensor:
            return u if norm == CIFAR else norm.apply(CIFAR.invert(u))

        if name == "ODIN":
            det: Callable[[Tensor], Tensor] = pod.ODIN(lambda u: model(to_model(u)),
                                                        eps=opts.odin_eps,
                                                        temperature=opts.odin_temperature)
        else:
            det = pod.MahalanobisODIN(lambda u: features_and_logits(model, to_model(u))[0],
                                      eps=opts.mahalanobis_eps)
            fitted = self.detectors["Mahalanobis"]
            det._base.mu = fitted.mu.to(self.device)
            det._base.precision = fitted.precision.to(self.device)
        out = []
        with _frozen_parameters(model), out_of_memory_as_error(self.batch_size):
            for part in iter_batches(len(images), self.batch_size):
                x = CIFAR.apply(images.images[part].to(self.device))
                out.append(det(x).detach().float().cpu())
        return torch.cat(out)


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

