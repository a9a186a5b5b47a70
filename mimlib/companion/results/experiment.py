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
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from ... import data as D
from ... import pins
from ...checkpoints import atomic_torch_save, load_checkpoint, load_published
from ...detectors import Representations
from ...device import resolve_device, seed_everything, set_deterministic
from ...errors import ConfigError
from ...images import ImageSet
from ...models import build_model, linear_head
from ...specs import DataSpec
from ...train import adapt, mim_finetune, oe_finetune, pretrain
from ...train_config import AdaptConfig, MIMConfig, OEConfig, PretrainConfig, TrainResult
from .keys import eval_data_key, numerics_key, precision_key, train_data_key, train_key
from .protocol import ProtocolSettings, paper_k, protocol_settings
from .runs import ModelRun
from .scoring import Scoring
from .setup import Setup
from .store import Entry, Store, canonical_json

MODEL_FILE = "model.pt"


class Experiment(Scoring):
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
    def id_train(self) -> ImageSet:
        return _load_id(self.setup.id_spec, "train", self.options).subset(
            self.setup.train_limit, self.setup.seed)

    @functools.cached_property
    def id_test(self) -> ImageSet:
        return _load_id(self.setup.id_spec, "test", self.options).subset(
            self.setup.test_limit, self.setup.seed)

    @functools.cached_property
    def ood(self) -> dict[str, ImageSet]:
        sets = {}
        for spec in self.setup.ood_specs:
            s = _load_ood(spec, self.options)
            sets[s.name] = s.subset(self.setup.ood_limit, self.setup.seed)
        return sets

    @property
    def fit_set(self) -> ImageSet:
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
                          **numerics_key(s))
        recipe = {"method": "adapt", "base": loaded.recipe, "data": train_data_key(s),
                  "selected_on": {"id_test": pins.identity(s.id_spec),
                                  "test_limit": s.test_limit},
                  "train": train_key(cfg)}

        def run() -> TrainResult:
            return adapt(_copy_model(loaded.model), self.id_train, self.accuracy, cfg)

        return self._trained("adapt", recipe, run, force, lambda: _copy_model(loaded.model))

    def _pretrained(self, force: bool) -> ModelRun:
        s = self.setup
        cfg = PretrainConfig(epochs=s.pretrain_epochs, lr=s.pretrain_lr, seed=s.seed,
                             **numerics_key(s))
        recipe = {"base": "pretrain", "data": train_data_key(s), "arch": s.arch,
                  "train": train_key(cfg)}

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
                  **numerics_key(self.setup), **self.settings.mim_overrides(), **overrides}
        cfg = MIMConfig(eval_every=eval_every, **params)
        return cfg, {"method": "mim", "base": base.recipe, "data": train_data_key(self.setup),
                     "train": train_key(cfg)}

    def oe_model(self, outliers: str, base: ModelRun | None = None, *, force: bool = False,
                 eval_every: int = 0, **overrides: Any) -> ModelRun:
        """Outlier Exposure fine-tuning of the base model on the auxiliary set ``outliers``."""
        base = base or self.base_model()
        cfg = OEConfig(seed=self.setup.seed, eval_every=eval_every,
                       **{**numerics_key(self.setup), **overrides})
        recipe = {"method": "oe", "outliers": outliers, "base": base.recipe,
                  "data": train_data_key(self.setup), "train": train_key(cfg)}

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
        return {"eval_every": eval_every, "data": eval_data_key(self.setup),
                "curve_limit": self.setup.curve_limit, **({"per_set": True} if per_set else {}),
                **precision_key(self.setup)}

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
        return eval_data_key(self.setup)

    def stored(self, kind: str, config: dict[str, Any],
               compute: Callable[[], tuple[dict[str, Any], dict[str, np.ndarray] | None]]
               ) -> Entry:
        """A derived computation (a gallery, features, per-class accuracy) kept in the store
        like the rest, so a chapter is rebuilt without the data: ``compute() -> (result,
        arrays)``; ``config`` names the model recipe and data it depends on."""
        return self.store.get_or_compute(kind, config, lambda: (*compute(), None),
                                         provenance=self.provenance)


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


def _copy_model(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).cpu()


@functools.lru_cache(maxsize=16)
def _load_id(spec: DataSpec, split: str, options: D.DataOptions) -> ImageSet:
    return D.load_id(spec, split, options)


@functools.lru_cache(maxsize=32)
def _load_ood(spec: str | DataSpec, options: D.DataOptions) -> ImageSet:
    return D.load_ood(spec, options)


