"""The training recipes: one loop's settings (LoopConfig) and each method's (MIM, Outlier Exposure, pretraining, adaptation), checked when made, and what a run returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from torch import nn
from .augment import INTERPOLATIONS, PostMixAugment
from .checks import choice, flag, interval, non_negative, positive, probability, whole
from .device import (LAYOUTS, PRECISIONS)
from .mixing import WEIGHT_SCHEMES, check_k
from .models import Normalization


#: How batch norm is handled while fine-tuning with outliers (a design choice, not a detail):
#: ``frozen``: the model in eval mode, running statistics and dropout untouched (the authors'
#: code never calls model.train()); ``id-stats``: train mode, the ID batch normalised by its own
#: statistics and the only one that updates the running ones, the outlier batch forwarded
#: separately with its own batch statistics and no update (an auxiliary BN as in AdvProp);
#: ``mixed-stats``: train mode, ID and outliers in one forward pass, so the running statistics
#: become those of the mixture (Outlier Exposure's fine-tuning).
BN_MODES = ("frozen", "id-stats", "mixed-stats")


#: Names the setting had before it had three values (still accepted; stored keys use them).
LEGACY_BN_MODES = {"eval": "frozen", "train": "mixed-stats"}


@dataclass
class LoopConfig:
    """Optimiser and loop settings shared by every training run (validated on creation)."""

    epochs: float = 1.0
    steps: int | None = None  # overrides epochs when given
    batch_size: int = 128
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    schedule: str = "constant"  # or "cosine" (OE's per-step cosine to lr * 1e-5)
    lam: float = 1.0
    bn_mode: str = "mixed-stats"  # see BN_MODES; without outliers all but frozen are train mode
    shuffle: bool = True
    id_augment: str = "none"  # or "crop_flip" (random 32x32 crop of the 4-padded image + flip)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # fp32 or bf16 autocast; auto: bf16 on CUDA, fp32 on a CPU
    layout: str = "auto"  # contiguous or channels_last; auto: by the device
    compile: bool = False
    eval_every: int = 0  # call the evaluation hook every N steps (and at 0 and the end)
    check_every: int = 0  # steps between checks for a non-finite loss; 0: 1 on the CPU, 50 on
    # an accelerator (each check makes the host wait for the device; the failing step is
    # still reported exactly)

    def __post_init__(self) -> None:
        positive(self.lr, "lr")
        if self.steps is not None:
            whole(self.steps, "steps")
        positive(self.epochs, "epochs (steps, when given, override it)")
        whole(self.batch_size, "batch_size")
        whole(self.eval_every, "eval_every", minimum=0)
        whole(self.check_every, "check_every", minimum=0)
        interval(self.momentum, "momentum", 0, 1, open_high=True)
        non_negative(self.weight_decay, "weight_decay")
        for name in ("nesterov", "shuffle", "compile"):
            flag(getattr(self, name), name)
        whole(self.seed, "seed", minimum=0)
        non_negative(self.lam, "lam")
        choice(self.schedule, "schedule", ("constant", "cosine"))
        self.bn_mode = LEGACY_BN_MODES.get(self.bn_mode, self.bn_mode)
        choice(self.bn_mode, "bn_mode", BN_MODES)
        choice(self.precision, "precision", ("auto", *PRECISIONS))
        choice(self.layout, "layout", ("auto", *LAYOUTS))
        choice(self.id_augment, "id_augment", ("none", "crop_flip"))

    def total_steps(self, n: int) -> int:
        """Optimiser steps for n training images (the last batch of an epoch may be smaller)."""
        return self.steps if self.steps is not None else math.ceil(
            self.epochs * math.ceil(n / self.batch_size))


@dataclass
class MIMConfig(LoopConfig):
    """MIM fine-tuning: the paper's defaults (k = 10, lambda = 1, SGD lr 1e-4, one epoch, batch
    norm frozen as in the authors' code)."""

    bn_mode: str = "frozen"
    k: int = 10  # CIFAR-10's; mimlib.companion.results.protocol.PAPER_K holds the paper's k per ID set
    weights: str = "equal"  # or "dirichlet"
    alpha: float = 1.0  # Dirichlet concentration
    aug_p: float = 1.0
    aug_colour: bool = True
    aug_affine: bool = True
    aug_quantize: bool = False  # emulate the authors' 8-bit PIL round trip
    aug_interpolation: str = "nearest"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lam == 0 and self.bn_mode == "id-stats":
            # without mixed images the two train modes are one computation: one store entry
            self.bn_mode = "mixed-stats"
        check_k(self.k)
        choice(self.weights, "weights", WEIGHT_SCHEMES)
        positive(self.alpha, "alpha")
        probability(self.aug_p, "aug_p (augmentation probability)")
        for name in ("aug_colour", "aug_affine", "aug_quantize"):
            flag(getattr(self, name), name)
        choice(self.aug_interpolation, "aug_interpolation", INTERPOLATIONS)

    def augmenter(self, norm: Normalization) -> PostMixAugment:
        """The post-mix augmentation for a model that expects inputs normalised by ``norm``."""
        return PostMixAugment(p=self.aug_p, colour=self.aug_colour, affine=self.aug_affine,
                              quantize=self.aug_quantize, interpolation=self.aug_interpolation,
                              mean=norm.mean, std=norm.std)


@dataclass
class OEConfig(LoopConfig):
    """Outlier Exposure fine-tuning, the OE code's recipe (oe_tune: 10 epochs, lr 1e-3, cosine)."""

    epochs: float = 10.0
    lr: float = 1e-3
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "cosine"
    lam: float = 0.5
    id_augment: str = "crop_flip"
    outlier_batch_size: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        whole(self.outlier_batch_size, "outlier_batch_size")


@dataclass
class PretrainConfig(LoopConfig):
    """The OE baseline recipe: 100 epochs, SGD Nesterov lr 0.1 cosine, wd 5e-4, crop + flip."""

    epochs: float = 100.0
    lr: float = 0.1
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "cosine"
    lam: float = 0.0
    id_augment: str = "crop_flip"


@dataclass
class AdaptConfig(LoopConfig):
    """Adapting a published classifier to the images actually used (e.g. a JPEG copy of its
    training set): plain epochs with crop + flip, at most ``max_epochs``, until the held-out
    accuracy stops rising; the best epoch's weights are kept."""

    lr: float = 0.01
    weight_decay: float = 5e-4
    lam: float = 0.0
    id_augment: str = "crop_flip"
    max_epochs: int = 6

    def __post_init__(self) -> None:
        super().__post_init__()
        whole(self.max_epochs, "max_epochs")


@dataclass
class TrainResult:
    """The trained model (in eval mode), one log row per step, and the hook's evaluations."""

    model: nn.Module
    log: list[dict[str, float]]
    evals: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
