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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from .. import data as D
from .. import pins
from ..checkpoints import atomic_torch_save, load_checkpoint, load_published, weights_cache
from ..detectors import (FittedDetectors, Representations, check_detectors, detector_spec,
                        extract)
from ..device import (EVAL_PRECISIONS, LAYOUTS, PRECISIONS, planned_device, planned_precision,
                     resolve_device, resolve_layout, seed_everything, set_deterministic)
from ..checks import choice, flag, positive, whole
from ..errors import ConfigError
from ..metrics import METRIC_KEYS, mean_metrics, ood_metrics
from ..models import ARCHITECTURES, build_model, linear_head, paper_weights
from ..specs import NOISE_SETS, SYNTHETIC_OOD_SETS, BaseSpec, DataSpec
from .score_codes import FLOAT32, check_format, code_error, encode
from .protocol import ProtocolSettings, check_protocol, paper_k, protocol_settings
from .store import Entry, Store, canonical_json
from ..train import (LEGACY_BN_MODES, AdaptConfig, MIMConfig, OEConfig, PretrainConfig,
                    TrainResult, adapt, mim_finetune, oe_finetune, pretrain)

SMOKE_OOD = SYNTHETIC_OOD_SETS + NOISE_SETS
MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class Setup:
    """What an experiment is about. Each step's store key takes the fields that decide its
    result (data by checksum); device, paths, downloads and batch sizes only decide where and
    how fast it is computed."""

    id_data: str = "synthetic"  # a data spec (see mimlib.specs); parsed: id_spec
    ood_sets: tuple[str, ...] = SMOKE_OOD  # parsed: ood_specs
    arch: str = "small_cnn"
    base: str = "pretrain"  # a base spec (see mimlib.specs); parsed: base_spec
    pretrain_epochs: float = 100.0
    pretrain_lr: float = 0.1
    adapt_epochs: int = 0  # >0: adapt a loaded base to the ID data first (at most this many epochs)
    adapt_lr: float = 0.01
    curve_limit: int | None = None  # images per set for the evaluations during training
    protocol: str = "corrected"
    train_limit: int | None = None
    test_limit: int | None = None
    ood_limit: int | None = None
    seed: int = 0
    device: str = "auto"
    data_root: str = D.DataOptions().root
    download: bool = True
    eval_batch_size: int = 512
    # numerics (each in the store keys where it differs from fp32 / contiguous, so a run
    # computed another way is never mixed with one computed before these settings existed):
    precision: str = "auto"  # training: fp32 or bf16 autocast; auto: bf16 on CUDA, else fp32
    layout: str = "auto"  # training: contiguous or channels_last; auto: by the device
    eval_precision: str = "fp32"  # evaluation forward passes: fp32 (as the authors) or bf16
    eval_layout: str = "auto"  # evaluation forward passes' memory layout
    deterministic: bool = False  # CUDA: deterministic kernels (slower); CPU runs are anyway
    weights_dir: str | None = None  # where published weights are (default: torch hub's cache)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ood_sets", tuple(self.ood_sets))
        check_protocol(self.protocol)
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of "
                              f"{sorted(ARCHITECTURES)}")
        if not self.ood_sets:
            raise ConfigError("ood_sets is empty: give at least one OOD data set")
        self.id_spec, self.ood_specs, self.base_spec  # noqa: B018  # each spec parses
        paper = paper_weights(self.id_data)
        if self.base_spec.kind == "published" and (paper is None or paper.arch != self.arch):
            raise ConfigError("published checkpoints exist for WRN-40-2 on cifar10 and cifar100 "
                              f"only, not {self.arch} on {self.id_data}; use base='pretrain'")
        if self.adapt_epochs and not self.base_spec.loaded:
            raise ConfigError("adapt_epochs adapts a loaded base (published, registry:, "
                              "checkpoint:) to the ID data; a model pretrained here needs none")
        whole(self.adapt_epochs, "adapt_epochs", minimum=0)
        for name in ("train_limit", "test_limit", "ood_limit", "curve_limit"):
            if getattr(self, name) is not None:
                whole(getattr(self, name), f"{name} (or None: all)")
        for name in ("pretrain_epochs", "pretrain_lr", "adapt_lr"):
            positive(getattr(self, name), name)
        whole(self.eval_batch_size, "eval_batch_size")
        whole(self.seed, "seed", minimum=0)
        choice(self.eval_precision, "eval_precision", EVAL_PRECISIONS)
        # what the settings say, checked without asking this machine: a stored result is
        # read on any machine; one that cannot compute a step says so when the step computes
        planned_device(self.device)
        choice(self.precision, "precision", ("auto", *PRECISIONS))
        for name in ("layout", "eval_layout"):
            choice(getattr(self, name), name, ("auto", *LAYOUTS))
        for name in ("download", "deterministic"):
            flag(getattr(self, name), name)

    @functools.cached_property
    def id_spec(self) -> DataSpec:
        """``id_data`` parsed (checked when the setup is made)."""
        return DataSpec.parse(self.id_data, "id")

    @functools.cached_property
    def ood_specs(self) -> tuple[DataSpec, ...]:
        """``ood_sets`` parsed (checked when the setup is made)."""
        return tuple(DataSpec.parse(spec, "ood") for spec in self.ood_sets)

    @functools.cached_property
    def base_spec(self) -> BaseSpec:
        """``base`` parsed (checked when the setup is made)."""
        return BaseSpec.parse(self.base)

    @property
    def published_key(self) -> str | None:
        """The registry key of the published weights a ``published`` or ``registry:`` base
        loads (None for one trained here or read from a file)."""
        spec = self.base_spec
        if spec.kind == "published":
            return paper_weights(self.id_data).key  # type: ignore[union-attr]  # checked
        return spec.value if spec.kind == "registry" else None

    @property
    def results_only(self) -> bool:
        """Whether pinned data are absent: stored results named by their pins are read, and
        only a step that needs the data themselves fails (with a message saying so)."""
        return any(pins.is_absent(spec) for spec in (self.id_spec, *self.ood_specs))

    def preflight(self) -> None:
        """Checks that touch the file system but do no heavy work: data paths exist, data
        is present when downloads are off, a checkpoint file loads and fits the model.
        Pinned data may be absent (see :attr:`results_only`)."""
        if self.results_only:
            return
        resolve_device(self.device)  # the data are here, so a page may compute on the device
        options = D.DataOptions(self.data_root, self.download)
        D.check_available(self.id_spec, options, role="id")
        for spec in self.ood_specs:
            D.check_available(spec, options)
        if self.published_key is not None:
            from ..checkpoints import check_published

            check_published(self.published_key, self.weights_folder, self.download)
        self.check_checkpoint()

    def check_checkpoint(self) -> None:
        """A ``checkpoint:PATH`` base loads and fits the model (nothing to check otherwise)."""
        if self.base_spec.kind == "checkpoint":
            from ..checkpoints import load_into, load_state_dict_file

            path = self.base_spec.value
            state = load_state_dict_file(path)
            classes = D.known_num_classes(self.id_spec)
            if classes is not None:
                load_into(build_model(self.arch, classes), state, path)

    @property
    def weights_folder(self) -> Path:
        """Where published weights are read from and downloaded to: ``weights_dir``, or torch
        hub's checkpoint folder, which pytorch-ood's own downloads share."""
        return weights_cache(self.weights_dir)


class ModelRun:
    """A trained (or loaded) model, the recipe that made it and its stored record.

    The model itself is loaded on first use: a notebook that only reads stored metrics never
    needs the weights (nor the data or the published checkpoint they came from).
    """

    def __init__(self, recipe: dict[str, Any], model: nn.Module | None = None,
                 record: dict[str, Any] | None = None, *,
                 load: Callable[[], nn.Module] | None = None) -> None:
        if model is None and load is None:
            raise ValueError("a ModelRun needs a model or a function that loads it")
        self.recipe, self.record = recipe, record or {}
        self._model, self._load = model, load

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            self._model = self._load().eval()  # type: ignore[misc]
        return self._model

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

    def __init__(self, setup: Setup, store: Store | None = None,
                 settings: ProtocolSettings | None = None, profile: str | None = None) -> None:
        self.setup = setup
        self.profile = profile  # the label of the parameter profile, recorded with every result
        self.store = store or Store()
        #: the protocol's decisions; pass modified settings to measure one quirk at a time
        self.settings: ProtocolSettings = settings or protocol_settings(setup.protocol,
                                                                        setup.id_data)
        if setup.deterministic:
            set_deterministic(True)
        self._rep_cache: dict[str, dict[str, Representations]] = {}
        self._forward_seconds: dict[str, float] = {}

    def derive(self, setup: Setup | None = None,
               settings: ProtocolSettings | None = None) -> Experiment:
        """Another experiment on the same store and profile (so its results say which
        profile made them): a changed setup, or the same setup with changed protocol settings."""
        return Experiment(setup or self.setup, self.store, settings, self.profile)

    # ------------------------------------------------------------------ data
    @property
    def options(self) -> D.DataOptions:
        return D.DataOptions(self.setup.data_root, self.setup.download)

    @functools.cached_property
    def id_train(self) -> D.ImageSet:
        return _load_id(self.setup.id_spec, "train", self.options).subset(
            self.setup.train_limit, self.setup.seed)

    @functools.cached_property
    def id_test(self) -> D.ImageSet:
        return _load_id(self.setup.id_spec, "test", self.options).subset(
            self.setup.test_limit, self.setup.seed)

    @functools.cached_property
    def ood(self) -> dict[str, D.ImageSet]:
        sets = {}
        for spec in self.setup.ood_specs:
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
        return {"profile": self.profile, "setup": dataclasses.asdict(self.setup),
                "protocol": self.setup.protocol,
                "data_sha256": self.data_checksums(),
                "device": str(resolve_device(self.setup.device))}

    # ------------------------------------------------------------------ models
    def base_model(self, *, force: bool = False) -> ModelRun:
        """The classifier MIM and the baselines start from: pretrained here (stored), or a
        loaded one (published, a file) adapted to the ID data when ``adapt_epochs`` > 0."""
        s = self.setup
        if not s.base_spec.loaded:
            return self._pretrained(force)
        loaded = self.loaded_model()
        if not s.adapt_epochs:
            return loaded
        return self.adapted_model(loaded, force=force)

    def loaded_model(self) -> ModelRun:
        """The published or given classifier as it is, before any training here."""
        s = self.setup
        key = s.published_key
        if key is not None:
            return ModelRun({"base": "published", "key": key}, load=lambda: self._published(key))
        if s.base_spec.kind == "checkpoint":
            path = s.base_spec.value
            return ModelRun({"base": "checkpoint", "path": path}, load=lambda: load_checkpoint(
                build_model(s.arch, self.id_train.num_classes), path))
        raise ConfigError(f"base {s.base!r} is trained here, not loaded")

    def _published(self, key: str) -> nn.Module:
        model = load_published(key, cache_dir=self.setup.weights_folder,
                               download=self.setup.download)
        classes = linear_head(model).out_features
        if classes != self.id_train.num_classes:
            raise ConfigError(f"checkpoint {key} has {classes} classes, "
                              f"{self.setup.id_data} has {self.id_train.num_classes}")
        return model

    def adapted_model(self, loaded: ModelRun, *, force: bool = False) -> ModelRun:
        """``loaded`` fine-tuned on the ID training images (crop + flip, ID loss only) while the
        ID test accuracy rises, at most ``adapt_epochs`` epochs; the best epoch is kept."""
        s = self.setup
        cfg = AdaptConfig(max_epochs=s.adapt_epochs, lr=s.adapt_lr, seed=s.seed,
                          **_numerics(s))
        recipe = {"method": "adapt", "base": loaded.recipe, "data": _train_data_key(s),
                  "selected_on": {"id_test": pins.identity(s.id_spec),
                                  "test_limit": s.test_limit},
                  "train": _train_key(cfg)}

        def run() -> TrainResult:
            return adapt(_copy_model(loaded.model), self.id_train, self.accuracy, cfg)

        return self._trained("adapt", recipe, run, force, lambda: _copy_model(loaded.model))

    def _pretrained(self, force: bool) -> ModelRun:
        s = self.setup
        cfg = PretrainConfig(epochs=s.pretrain_epochs, lr=s.pretrain_lr, seed=s.seed,
                             **_numerics(s))
        recipe = {"base": "pretrain", "data": _train_data_key(s), "arch": s.arch,
                  "train": _train_key(cfg)}

        def run() -> TrainResult:
            seed_everything(s.seed)
            model = build_model(s.arch, self.id_train.num_classes)
            return pretrain(model, self.id_train, cfg)

        return self._trained("pretrain", recipe, run, force,
                             lambda: build_model(s.arch, self.id_train.num_classes))

    def mim_model(self, base: ModelRun | None = None, *, force: bool = False,
                  eval_every: int = 0, per_set_curve: bool = False,
                  **overrides: Any) -> ModelRun:
        """MIM-fine-tune the base model; protocol settings first, then ``overrides``.

        With ``eval_every=N`` the mean MSP AUROC over the OOD sets and the ID accuracy are
        measured every N steps (the authors evaluated every 30 steps) and stored with the run;
        ``per_set_curve`` adds each set's AUROC (``auroc[NAME]``), which near/far judgements need.
        """
        base = base or self.base_model()
        cfg, recipe = self._mim_config(base, eval_every, overrides)

        def run() -> TrainResult:
            model = _copy_model(base.model)
            return mim_finetune(model, self.id_train, cfg,
                                on_eval=self._eval_hook(per_set_curve))

        return self._trained("finetune", recipe, run, force, lambda: _copy_model(base.model),
                             self._curve_key(eval_every, per_set_curve))

    def mim_recipe(self, base: ModelRun, **overrides: Any) -> dict[str, Any]:
        """The store key of a MIM run (what :meth:`mim_model` would look up)."""
        return self._mim_config(base, 0, overrides)[1]

    def _mim_config(self, base: ModelRun, eval_every: int,
                    overrides: dict[str, Any]) -> tuple[MIMConfig, dict[str, Any]]:
        params = {"k": paper_k(self.setup.id_data), "seed": self.setup.seed,
                  **_numerics(self.setup), **self.settings.mim_overrides(), **overrides}
        cfg = MIMConfig(eval_every=eval_every, **params)
        return cfg, {"method": "mim", "base": base.recipe, "data": _train_data_key(self.setup),
                     "train": _train_key(cfg)}

    def oe_model(self, outliers: str, base: ModelRun | None = None, *, force: bool = False,
                 eval_every: int = 0, **overrides: Any) -> ModelRun:
        """Outlier Exposure fine-tuning of the base model on the auxiliary set ``outliers``."""
        base = base or self.base_model()
        cfg = OEConfig(seed=self.setup.seed, eval_every=eval_every,
                       **{**_numerics(self.setup), **overrides})
        recipe = {"method": "oe", "outliers": outliers, "base": base.recipe,
                  "data": _train_data_key(self.setup), "train": _train_key(cfg)}

        def run() -> TrainResult:
            aux = _load_ood(outliers, self.options)
            model = _copy_model(base.model)
            return oe_finetune(model, self.id_train, aux, cfg, on_eval=self._eval_hook())

        return self._trained("finetune", recipe, run, force, lambda: _copy_model(base.model),
                             self._curve_key(eval_every))

    def _curve_key(self, eval_every: int, per_set: bool = False) -> dict[str, Any] | None:
        """What an evaluation curve during training depends on (None: no curve wanted)."""
        if not eval_every:
            return None
        return {"eval_every": eval_every, "data": _eval_data_key(self.setup),
                "curve_limit": self.setup.curve_limit, **({"per_set": True} if per_set else {}),
                **_precision_key(self.setup)}

    def _trained(self, kind: str, recipe: dict[str, Any], run: Any, force: bool,
                 blank: Any, curve: dict[str, Any] | None = None) -> ModelRun:
        """The stored run for this recipe, or train and store it.

        Evaluations during training do not change the weights, so they are not part of the
        key; a stored run asked for a curve that it does not hold is never rewritten (it may
        be committed): the curve comes from an entry of its own (:meth:`_with_curve`).
        """
        stored = None if force else self.store.get(kind, recipe)
        if stored is not None and curve is not None and not _curve_holds(
                stored.record["result"].get("curve"), curve):
            return self._with_curve(kind, recipe, stored, run, blank, curve)
        trained: list[nn.Module] = []

        def train() -> tuple[dict[str, Any], None, dict[str, Callable[[Path], None]]]:
            result: TrainResult = run()
            trained.append(result.model)
            payload = {"log": result.log, "evals": result.evals, "curve": curve,
                       "seconds": result.seconds, "train_config": result.config}
            return payload, None, {
                MODEL_FILE: lambda p: atomic_torch_save(result.model.state_dict(), p)}

        entry = self.store.get_or_compute(kind, recipe, train, force=force,
                                          provenance=self.provenance)
        if trained:
            return ModelRun(recipe, trained[0].eval(), entry.record)
        return ModelRun(recipe, None, entry.record,
                        load=self._loader(kind, recipe, entry, run, blank))

    def _with_curve(self, kind: str, recipe: dict[str, Any], stored: Entry, run: Any,
                    blank: Any, curve: dict[str, Any]) -> ModelRun:
        """The stored run with a curve it does not hold: the run is repeated with the
        evaluations once across jobs, its curve stored as an entry of kind ``curve`` keyed by
        the run and the curve, and its weights, when the stored entry keeps none, put into
        ROOT/.recomputed (as :meth:`_loader` would train them). The stored entry is unchanged."""
        trained: list[nn.Module] = []

        def train() -> tuple[dict[str, Any], None, None]:
            result: TrainResult = run()
            _warn_unless_reproduced(stored, result)
            trained.append(result.model)
            return {"log": result.log, "evals": result.evals, "seconds": result.seconds}, None, None

        entry = self.store.get_or_compute("curve", {"kind": kind, "run": recipe, "curve": curve},
                                          train, provenance=self.provenance)
        if trained and not stored.file(MODEL_FILE).is_file():
            self.store.recomputed(kind, recipe, MODEL_FILE,
                                  lambda p: atomic_torch_save(trained[0].state_dict(), p))
        result = {**stored.record["result"], "evals": entry.record["result"]["evals"],
                  "curve": curve}
        return ModelRun(recipe, None, {**stored.record, "result": result},
                        load=self._loader(kind, recipe, stored, run, blank))

    def _loader(self, kind: str, recipe: dict[str, Any], entry: Entry, run: Any,
                blank: Any) -> Callable[[], nn.Module]:
        """What loads a stored run's weights: the entry's own, else (committed results keep
        few weights) trained again, deterministic on the CPU, once across jobs, into the
        store's ROOT/.recomputed; the entry is never rewritten."""

        def load() -> nn.Module:
            if entry.file(MODEL_FILE).is_file():
                return load_checkpoint(blank(), entry.file(MODEL_FILE))
            return load_checkpoint(blank(), self.store.recomputed(kind, recipe, MODEL_FILE,
                                                                  train_again))

        def train_again(path: Path) -> None:
            result: TrainResult = run()
            _warn_unless_reproduced(entry, result)
            atomic_torch_save(result.model.state_dict(), path)

        return load

    # ------------------------------------------------------------------ derived results
    def eval_data_key(self) -> dict[str, Any]:
        """What names the evaluation data in store keys (checksums, limits, seed)."""
        return _eval_data_key(self.setup)

    def stored(self, kind: str, config: dict[str, Any],
               compute: Callable[[], tuple[dict[str, Any], dict[str, np.ndarray] | None]]
               ) -> Entry:
        """A derived computation (a gallery, features, per-class accuracy) kept in the store
        like the rest, so a chapter is rebuilt without the data: ``compute() -> (result,
        arrays)``; ``config`` names the model recipe and data it depends on."""
        return self.store.get_or_compute(kind, config, lambda: (*compute(), None),
                                         provenance=self.provenance)

    # ------------------------------------------------------------------ evaluation
    def predictions(self, run: ModelRun) -> np.ndarray:
        """The predicted class of every ID test image (stored: paired accuracy comparisons
        resample the test images, which needs each image's outcome, not the mean)."""
        config = {"model": run.recipe, "data": _eval_data_key(self.setup),
                  **_precision_key(self.setup)}

        def compute() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
            reps = self._reps(run, "__id__")
            predicted = reps.logits.argmax(1)
            return ({"accuracy": float((predicted == reps.labels).float().mean())},
                    {"predicted": predicted.numpy().astype(np.int16),
                     "labels": reps.labels.numpy().astype(np.int16)})

        arrays = self.stored("predictions", config, compute).arrays()
        return arrays["predicted"] == arrays["labels"]

    def accuracy(self, model: nn.Module) -> float:
        """Top-1 accuracy on the ID test set."""
        reps = self.representations(model, self.id_test)
        return float((reps.logits.argmax(1) == reps.labels).float().mean())

    def representations(self, model: nn.Module, images: D.ImageSet) -> Representations:
        """Features and logits of a set under a model, the one forward pass every evaluation
        uses: the setup's device, eval precision, eval layout and eval batch size."""
        return extract(model, images, batch_size=self.setup.eval_batch_size,
                       device=self.setup.device, precision=self.setup.eval_precision,
                       layout=self.setup.eval_layout)

    def _eval_hook(self, per_set: bool = False):  # noqa: ANN202 - a closure for the loop
        limit, seed = self.setup.curve_limit, self.setup.seed

        def hook(model: nn.Module, step: int) -> dict[str, float]:
            id_reps = self.representations(model, self.id_test.subset(limit, seed))
            id_msp = id_reps.logits.softmax(1).amax(1).numpy()
            aurocs = {name: ood_metrics(id_msp, self.representations(model, s.subset(limit, seed))
                                        .logits.softmax(1).amax(1).numpy())["auroc"]
                      for name, s in self.ood.items()}
            return {"mean_auroc": float(np.mean(list(aurocs.values()))),
                    **{f"auroc[{name}]": value for name, value in aurocs.items() if per_set},
                    "accuracy": float((id_reps.logits.argmax(1) == id_reps.labels)
                                      .float().mean())}
        return hook

    def evaluate(self, run: ModelRun, detectors: tuple[str, ...] | list[str] = ("MSP",), *,
                 force: bool = False, stored_as: str = FLOAT32) -> Evaluation:
        """Score the ID test set and every OOD set with each detector (stored per detector).

        Each detector's scores are a store entry of their own, keyed by the model's recipe,
        the detector and only the options it uses, so asking for a subset or a superset of
        detectors later reuses them. The network runs once per model and data set.
        ``stored_as`` is how the entries keep per-image scores (:mod:`.score_codes`: float32,
        or one byte per image for chapters whose scores would not fit the committed store).
        """
        names = check_detectors(detectors)
        entries = {name: self._detector_entry(run, name, force, stored_as) for name in names}
        rows, scores, timings = [], {}, {}
        for name, entry in entries.items():
            result = entry.record["result"]
            rows += [{"detector": name, **row} for row in result["rows"]]
            scores.update({f"{name}/{k}": v for k, v in entry.arrays().items()})
            timings[name] = result["timings"]
        first = next(iter(entries.values())).record
        record = {"config": {"model": run.recipe, "detectors": list(names)},
                  "result": {"means": {n: e.record["result"]["mean"] for n, e in entries.items()},
                             "accuracy": first["result"]["accuracy"], "timings": timings},
                  "provenance": first["provenance"], "environment": first["environment"],
                  "entries": {n: str(e.path) for n, e in entries.items()}}
        return Evaluation(rows, scores, first["result"]["accuracy"], record)

    def per_image_scores(self, run: ModelRun, detector: str = "MSP",
                         stored_as: str = FLOAT32) -> dict[str, np.ndarray]:
        """One detector's per-image scores under one model, as stored: ``__id__`` (the ID
        test images) and each OOD set (float32 scores, or codes of the same order)."""
        return self.scores_entry(run, detector, stored_as).arrays()

    def scores_entry(self, run: ModelRun, detector: str, stored_as: str = FLOAT32) -> Entry:
        """The store entry of one detector's scores under one model, computed if missing:
        its record holds the metrics per set, its arrays the per-image scores."""
        return self._detector_entry(run, check_detectors((detector,))[0], False, stored_as)

    def detector_config(self, run: ModelRun, name: str,
                        stored_as: str = FLOAT32) -> dict[str, Any]:
        """The store key of one detector's scores for one model (see :meth:`evaluate`); the
        format enters it only when not float32, so float32 keys are those of before."""
        opts, fitted = self.settings.detector_options, detector_spec(name).fitted
        return {"model": run.recipe, "detector": name, "options": opts.relevant(name),
                "fit_split": self.settings.fit_split if fitted else None,
                "data": _eval_data_key(self.setup), **_precision_key(self.setup),
                **({} if check_format(stored_as) == FLOAT32 else {"stored_as": stored_as})}

    def _detector_entry(self, run: ModelRun, name: str, force: bool,
                        stored_as: str = FLOAT32) -> Entry:
        return self.store.get_or_compute("scores", self.detector_config(run, name, stored_as),
                                         lambda: self._score(run, name, stored_as), force=force,
                                         provenance=self.provenance)

    def _score(self, run: ModelRun, name: str,
               stored_as: str = FLOAT32) -> tuple[dict[str, Any], dict[str, Any], None]:
        """Fit one detector and score every set with it: (result, per-sample scores, no files)."""
        opts, fitted = self.settings.detector_options, detector_spec(name).fitted
        reps = {key: self._reps(run, key) for key in ("__id__", *self.ood)}
        t = time.perf_counter()
        fit = self._reps(run, "__fit__") if fitted else reps["__id__"]
        detector = FittedDetectors((name,), run.model, fit, opts, device=self.setup.device)
        fit_seconds = time.perf_counter() - t
        images = {"__id__": self.id_test, **self.ood}
        t = time.perf_counter()
        arrays = {key: detector.score(name, reps[key], images[key]) for key in reps}
        score_seconds = time.perf_counter() - t
        rows = [{"ood": key, **ood_metrics(arrays["__id__"], arrays[key])} for key in self.ood]
        id_reps = reps["__id__"]
        result = {"rows": rows, "mean": mean_metrics([{k: r[k] for k in METRIC_KEYS}
                                                      for r in rows]),
                  "accuracy": float((id_reps.logits.argmax(1) == id_reps.labels).float().mean()),
                  "timings": {"fit": fit_seconds, "score": score_seconds,
                              "forward (all sets, shared)": self._forward_seconds.get(
                                  canonical_json(run.recipe), 0.0)}}
        # metrics come from the float64 scores; the stored per-sample scores are compact
        stored = encode(arrays, stored_as)
        if stored_as != FLOAT32:
            result["stored_as"] = {"format": stored_as,
                                   "max_auroc_error": code_error(arrays, stored)}
        return result, stored, None

    def _reps(self, run: ModelRun, key: str) -> Representations:
        """Features and logits of one set under one model, computed once per experiment."""
        recipe = canonical_json(run.recipe)
        cache = self._rep_cache.setdefault(recipe, {})
        if key not in cache:
            images = {"__id__": self.id_test, "__fit__": self.fit_set}.get(key) or self.ood[key]
            t = time.perf_counter()
            if key == "__fit__" and self.settings.fit_split == "test":
                cache[key] = self._reps(run, "__id__")
            else:
                cache[key] = self.representations(run.model, images)
            self._forward_seconds[recipe] = (self._forward_seconds.get(recipe, 0.0)
                                             + time.perf_counter() - t)
        return cache[key]


def _train_data_key(setup: Setup) -> dict[str, Any]:
    """What decides the training data: the ID set, its subset size and the subset seed."""
    return {"id_data": pins.identity(setup.id_spec), "train_limit": setup.train_limit,
            "seed": setup.seed}


def _eval_data_key(setup: Setup) -> dict[str, Any]:
    """What decides the evaluation data (the fit set may be the training set)."""
    return {"id_data": pins.identity(setup.id_spec), "train_limit": setup.train_limit,
            "test_limit": setup.test_limit,
            "ood_sets": [pins.identity(spec) for spec in setup.ood_specs],
            "ood_limit": setup.ood_limit, "seed": setup.seed}


def _numerics(setup: Setup) -> dict[str, Any]:
    """The device, precision and layout a setup's training runs use."""
    return {"device": setup.device, "precision": setup.precision, "layout": setup.layout}


def _precision_key(setup: Setup) -> dict[str, Any]:
    """How evaluations ran, in keys where it is not fp32 and contiguous (entries stored before
    these settings existed, all computed so, keep their keys)."""
    device = planned_device(setup.device)
    key = {}
    if setup.eval_precision != "fp32":
        key["eval_precision"] = setup.eval_precision
    if resolve_layout(device, setup.eval_layout) != "contiguous":
        key["eval_layout"] = resolve_layout(device, setup.eval_layout)
    return key


def _warn_unless_reproduced(entry: Entry, result: TrainResult) -> None:
    """A RuntimeWarning when a run trained again does not reproduce the stored one's log:
    what is computed from it may not match the stored results."""
    import warnings

    if canonical_json(result.log) != canonical_json(entry.record["result"]["log"]):
        warnings.warn(f"the weights of {entry.path} trained again here differ from the "
                      "stored run's (the training logs differ): results computed from "
                      "them may not match the stored ones", RuntimeWarning, stacklevel=3)


def _curve_holds(stored: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """Whether a stored curve is the one wanted (a per-set curve also holds the mean)."""
    if stored is None:
        return False
    if not wanted.get("per_set"):
        stored = {k: v for k, v in stored.items() if k != "per_set"}
    return stored == wanted


#: The batch-norm modes as keys stored before there were three name them.
_BN_KEYS = {mode: legacy for legacy, mode in LEGACY_BN_MODES.items()}


def _train_key(cfg: Any) -> dict[str, Any]:
    """The training configuration without fields that do not change the weights.

    Keys keep the form they had before precision, layout and the third batch-norm mode
    existed, so that committed entries stay found: every one was computed in fp32 and the
    contiguous layout on a CPU and stored with ``amp`` and ``channels_last`` true (which acted
    only on CUDA), and batch norm ``eval`` / ``train`` for frozen / mixed-stats. Any other
    precision or layout is named in the key.
    """
    skip = {"device", "check_every", "compile", "eval_every", "precision", "layout"}
    key = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}
    key["bn_mode"] = _BN_KEYS.get(cfg.bn_mode, cfg.bn_mode)
    key.update(amp=True, channels_last=True)
    device = planned_device(cfg.device)
    numerics = {"precision": planned_precision(device, cfg.precision),
                "layout": resolve_layout(device, cfg.layout)}
    if numerics != {"precision": "fp32", "layout": "contiguous"}:
        key["numerics"] = numerics
    return key


def _copy_model(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).cpu()


@functools.lru_cache(maxsize=16)
def _load_id(spec: DataSpec, split: str, options: D.DataOptions) -> D.ImageSet:
    return D.load_id(spec, split, options)


@functools.lru_cache(maxsize=32)
def _load_ood(spec: str | DataSpec, options: D.DataOptions) -> D.ImageSet:
    return D.load_ood(spec, options)


__all__ = ["Setup", "Experiment", "ModelRun", "Evaluation", "SMOKE_OOD"]
