"""Store-backed experiments: the functions every notebook calls.

An :class:`Experiment` binds a :class:`Setup` (data, architecture, starting point, protocol) to a
results store. Each heavy step (pretraining, MIM or OE fine-tuning, scoring a model with a set of
detectors) is keyed by the configuration that determines its result and computed at most once;
re-running a notebook with the same parameters reads the store. Each stored record carries the
setup, the protocol, the data checksums, library versions and the git revision.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from . import data as D
from .checkpoints import (PAPER_CHECKPOINTS, atomic_torch_save, load_checkpoint, load_published)
from .detectors import TABLE1_DETECTORS, FittedDetectors, Representations, check_detectors, extract
from .device import resolve_device, seed_everything
from .errors import ConfigError
from .metrics import METRIC_KEYS, mean_metrics, ood_metrics
from .models import ARCHITECTURES, build_model
from .protocol import ProtocolSettings, check_protocol, paper_k, protocol_settings
from .store import Entry, Store
from .train import MIMConfig, OEConfig, PretrainConfig, TrainResult, mim_finetune, oe_finetune, pretrain

SMOKE_OOD = D.SYNTHETIC_OOD_SETS + D.NOISE_SETS
MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class Setup:
    """What an experiment is about. Fields in :meth:`key` decide results; the rest only where
    and how fast they are computed."""

    id_data: str = "synthetic"
    ood_sets: tuple[str, ...] = SMOKE_OOD
    arch: str = "small_cnn"
    base: str = "pretrain"  # "pretrain", "published" (the paper's checkpoint) or "checkpoint:PATH"
    pretrain_epochs: float = 100.0
    pretrain_lr: float = 0.1
    protocol: str = "corrected"
    train_limit: int | None = None
    test_limit: int | None = None
    ood_limit: int | None = None
    seed: int = 0
    device: str = "auto"
    data_root: str = D.DataOptions().root
    download: bool = True
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        object.__setattr__(self, "ood_sets", tuple(self.ood_sets))
        check_protocol(self.protocol)
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of "
                              f"{sorted(ARCHITECTURES)}")
        if not (self.id_data in D.ID_SETS or self.id_data.startswith("folder:")):
            raise ConfigError(f"unknown ID data set {self.id_data!r}; choose one of "
                              f"{list(D.ID_SETS)} or 'folder:PATH'")
        if not self.ood_sets:
            raise ConfigError("ood_sets is empty: give at least one OOD data set")
        if not (self.base in ("pretrain", "published") or self.base.startswith("checkpoint:")):
            raise ConfigError(f"base must be 'pretrain', 'published' or 'checkpoint:PATH', got "
                              f"{self.base!r}")
        if self.base == "published" and (self.id_data not in PAPER_CHECKPOINTS
                                         or self.arch != "wrn40_2"):
            raise ConfigError("published checkpoints exist for WRN-40-2 on cifar10 and cifar100 "
                              f"only, not {self.arch} on {self.id_data}; use base='pretrain'")
        for name in ("train_limit", "test_limit", "ood_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1 or None, got {value!r}")
        if not self.pretrain_epochs > 0 or not self.pretrain_lr > 0:
            raise ConfigError("pretrain_epochs and pretrain_lr must be > 0")
        if self.eval_batch_size < 1:
            raise ConfigError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        resolve_device(self.device)

    def key(self) -> dict[str, Any]:
        """The fields that decide results (not device, paths to caches, or batch sizes)."""
        skip = {"device", "data_root", "download", "eval_batch_size"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in skip}


@dataclass
class ModelRun:
    """A trained (or loaded) model, the recipe that made it and its stored record."""

    recipe: dict[str, Any]
    model: nn.Module
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def log(self) -> list[dict[str, float]]:
        return self.record.get("result", {}).get("log", [])

    @property
    def evals(self) -> list[dict[str, float]]:
        return self.record.get("result", {}).get("evals", [])


@dataclass
class Evaluation:
    """Metrics per (detector, OOD set), per-sample scores, ID accuracy and timings."""

    rows: list[dict[str, Any]]
    scores: dict[str, np.ndarray]
    accuracy: float
    record: dict[str, Any]

    def mean(self, detector: str, metric: str = "auroc") -> float:
        return float(np.mean([r[metric] for r in self.rows if r["detector"] == detector]))


class Experiment:
    """A :class:`Setup` bound to a results store; see the module docstring."""

    def __init__(self, setup: Setup, store: Store | None = None) -> None:
        self.setup = setup
        self.store = store or Store()
        self.settings: ProtocolSettings = protocol_settings(setup.protocol, setup.id_data)

    # ------------------------------------------------------------------ data
    @property
    def options(self) -> D.DataOptions:
        return D.DataOptions(self.setup.data_root, self.setup.download)

    @functools.cached_property
    def id_train(self) -> D.ImageSet:
        return _load_id(self.setup.id_data, "train", self.options).subset(
            self.setup.train_limit, self.setup.seed)

    @functools.cached_property
    def id_test(self) -> D.ImageSet:
        return _load_id(self.setup.id_data, "test", self.options).subset(
            self.setup.test_limit, self.setup.seed)

    @functools.cached_property
    def ood(self) -> dict[str, D.ImageSet]:
        sets = {}
        for spec in self.setup.ood_sets:
            s = _load_ood(spec, self.options)
            sets[s.name] = s.subset(self.setup.ood_limit, self.setup.seed)
        return sets

    @property
    def fit_set(self) -> D.ImageSet:
        """Where the post-hoc detectors are fitted: the ID train set, or test (faithful)."""
        return self.id_test if self.settings.fit_split == "test" else self.id_train

    def data_checksums(self) -> dict[str, str]:
        sets = {"id_train": self.id_train, "id_test": self.id_test, **self.ood}
        return {name: s.sha256() for name, s in sets.items()}

    def provenance(self) -> dict[str, Any]:
        return {"setup": dataclasses.asdict(self.setup), "protocol": self.setup.protocol,
                "data_sha256": self.data_checksums(),
                "device": str(resolve_device(self.setup.device))}

    # ------------------------------------------------------------------ models
    def base_model(self, *, force: bool = False) -> ModelRun:
        """The starting classifier: pretrained here (stored), published, or from a file."""
        s = self.setup
        if s.base == "published":
            key = PAPER_CHECKPOINTS[s.id_data]
            model = load_published(key, cache_dir=Path(s.data_root) / "checkpoints",
                                   download=s.download)
            return ModelRun({"base": "published", "key": key}, model)
        if s.base.startswith("checkpoint:"):
            path = s.base[len("checkpoint:"):]
            model = load_checkpoint(build_model(s.arch, self.id_train.num_classes), path)
            return ModelRun({"base": "checkpoint", "path": path}, model)
        cfg = PretrainConfig(epochs=s.pretrain_epochs, lr=s.pretrain_lr, seed=s.seed,
                             device=s.device)
        recipe = {"base": "pretrain", "data": _train_data_key(s), "arch": s.arch,
                  "train": _train_key(cfg)}

        def run() -> TrainResult:
            seed_everything(s.seed)
            model = build_model(s.arch, self.id_train.num_classes)
            return pretrain(model, self.id_train, cfg)

        return self._trained("pretrain", recipe, run, force,
                             lambda: build_model(s.arch, self.id_train.num_classes))

    def mim_model(self, base: ModelRun | None = None, *, force: bool = False,
                  eval_every: int = 0, **overrides: Any) -> ModelRun:
        """MIM-fine-tune the base model; protocol settings first, then ``overrides``.

        With ``eval_every=N`` the mean MSP AUROC over the OOD sets and the ID accuracy are
        measured every N steps (the authors evaluated every 30 steps) and stored with the run.
        """
        base = base or self.base_model()
        params = {"k": paper_k(self.setup.id_data), "seed": self.setup.seed,
                  **self.settings.mim_overrides(), **overrides}
        cfg = MIMConfig(device=self.setup.device, eval_every=eval_every, **params)
        recipe = {"method": "mim", "base": base.recipe, "data": _train_data_key(self.setup),
                  "train": _train_key(cfg)}
        if eval_every:
            recipe["eval_data"] = _eval_data_key(self.setup)

        def run() -> TrainResult:
            model = _copy_model(base.model)
            return mim_finetune(model, self.id_train, cfg, on_eval=self._eval_hook())

        return self._trained("finetune", recipe, run, force, lambda: _copy_model(base.model))

    def oe_model(self, outliers: str, base: ModelRun | None = None, *, force: bool = False,
                 eval_every: int = 0, **overrides: Any) -> ModelRun:
        """Outlier Exposure fine-tuning of the base model on the auxiliary set ``outliers``."""
        base = base or self.base_model()
        cfg = OEConfig(device=self.setup.device, seed=self.setup.seed, eval_every=eval_every,
                       **overrides)
        recipe = {"method": "oe", "outliers": outliers, "base": base.recipe,
                  "data": _train_data_key(self.setup), "train": _train_key(cfg)}
        if eval_every:
            recipe["eval_data"] = _eval_data_key(self.setup)

        def run() -> TrainResult:
            aux = _load_ood(outliers, self.options)
            model = _copy_model(base.model)
            return oe_finetune(model, self.id_train, aux, cfg, on_eval=self._eval_hook())

        return self._trained("finetune", recipe, run, force, lambda: _copy_model(base.model))

    def _trained(self, kind: str, recipe: dict[str, Any], run: Any, force: bool,
                 blank: Any) -> ModelRun:
        entry = None if force else self.store.get(kind, recipe)
        if entry is None:
            result: TrainResult = run()
            payload = {"log": result.log, "evals": result.evals, "seconds": result.seconds,
                       "train_config": result.config}
            if force:
                self.store.delete(kind, recipe)
            entry = self.store.put(kind, recipe, payload, files={
                MODEL_FILE: lambda p: atomic_torch_save(result.model.state_dict(), p)},
                provenance=self.provenance())
            return ModelRun(recipe, result.model.eval(), entry.record)
        model = load_checkpoint(blank(), entry.file(MODEL_FILE))
        return ModelRun(recipe, model.eval(), entry.record)

    # ------------------------------------------------------------------ evaluation
    def accuracy(self, model: nn.Module) -> float:
        """Top-1 accuracy on the ID test set."""
        reps = self._extract(model, self.id_test)
        return float((reps.logits.argmax(1) == reps.labels).float().mean())

    def _extract(self, model: nn.Module, images: D.ImageSet) -> Representations:
        return extract(model, images, batch_size=self.setup.eval_batch_size,
                       device=self.setup.device)

    def _eval_hook(self):  # noqa: ANN202 - a closure for the training loop
        def hook(model: nn.Module, step: int) -> dict[str, float]:
            id_reps = self._extract(model, self.id_test)
            id_msp = id_reps.logits.softmax(1).amax(1).numpy()
            aurocs = [ood_metrics(id_msp, self._extract(model, s).logits.softmax(1).amax(1)
                                  .numpy())["auroc"] for s in self.ood.values()]
            return {"mean_auroc": float(np.mean(aurocs)),
                    "accuracy": float((id_reps.logits.argmax(1) == id_reps.labels)
                                      .float().mean())}
        return hook

    def evaluate(self, run: ModelRun, detectors: tuple[str, ...] | list[str] = ("MSP",), *,
                 force: bool = False) -> Evaluation:
        """Score the ID test set and every OOD set with each detector (stored, per sample)."""
        names = check_detectors(detectors)
        opts = self.settings.detector_options
        config = {"model": run.recipe, "detectors": list(names),
                  "detector_options": dataclasses.asdict(opts),
                  "fit_split": self.settings.fit_split, "data": _eval_data_key(self.setup)}
        entry = None if force else self.store.get("scores", config)
        if entry is None:
            if force:
                self.store.delete("scores", config)
            entry = self._score(run, names, config)
        result = entry.record["result"]
        return Evaluation(result["rows"], entry.arrays(), result["accuracy"], entry.record)

    def _score(self, run: ModelRun, names: tuple[str, ...], config: dict[str, Any]) -> Entry:
        model = run.model
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        reps = {"__id__": self._extract(model, self.id_test)}
        reps.update({name: self._extract(model, s) for name, s in self.ood.items()})
        fit_reps = (reps["__id__"] if self.settings.fit_split == "test"
                    else self._extract(model, self.fit_set))
        timings["forward"] = time.perf_counter() - t0
        images = {"__id__": self.id_test, **self.ood}
        arrays: dict[str, np.ndarray] = {}
        rows = []
        for det in names:
            t = time.perf_counter()
            fitted = FittedDetectors((det,), model, fit_reps, self.settings.detector_options,
                                     device=self.setup.device)
            timings[f"fit/{det}"] = time.perf_counter() - t
            t = time.perf_counter()
            id_scores = fitted.score(det, reps["__id__"], images["__id__"])
            arrays[f"{det}/__id__"] = id_scores
            for name in self.ood:
                ood_scores = fitted.score(det, reps[name], images[name])
                arrays[f"{det}/{name}"] = ood_scores
                rows.append({"detector": det, "ood": name, **ood_metrics(id_scores, ood_scores)})
            timings[f"score/{det}"] = time.perf_counter() - t
        accuracy = float((reps["__id__"].logits.argmax(1) == reps["__id__"].labels)
                         .float().mean())
        means = {det: mean_metrics([{k: r[k] for k in METRIC_KEYS} for r in rows
                                    if r["detector"] == det]) for det in names}
        result = {"rows": rows, "accuracy": accuracy, "timings": timings, "means": means}
        return self.store.put("scores", config, result, arrays, provenance=self.provenance())


def _train_data_key(setup: Setup) -> dict[str, Any]:
    """What decides the training data: the ID set, its subset size and the subset seed."""
    return {"id_data": setup.id_data, "train_limit": setup.train_limit, "seed": setup.seed}


def _eval_data_key(setup: Setup) -> dict[str, Any]:
    """What decides the evaluation data (the fit set may be the training set)."""
    return {"id_data": setup.id_data, "train_limit": setup.train_limit,
            "test_limit": setup.test_limit, "ood_sets": list(setup.ood_sets),
            "ood_limit": setup.ood_limit, "seed": setup.seed}


def _train_key(cfg: Any) -> dict[str, Any]:
    """The training configuration without fields that do not change the weights."""
    skip = {"device", "check_every", "compile"}
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}


def _copy_model(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).cpu()


@functools.lru_cache(maxsize=16)
def _load_id(spec: str, split: str, options: D.DataOptions) -> D.ImageSet:
    return D.load_id(spec, split, options)


@functools.lru_cache(maxsize=32)
def _load_ood(spec: str, options: D.DataOptions) -> D.ImageSet:
    return D.load_ood(spec, options)


__all__ = ["Setup", "Experiment", "ModelRun", "Evaluation", "TABLE1_DETECTORS", "SMOKE_OOD"]
