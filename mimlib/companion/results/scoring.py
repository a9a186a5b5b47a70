"""Scoring a model of an experiment: one forward pass per model and set (cached), every
detector's scores a store entry of its own, per-image predictions for paired accuracy, and the
curve hook a fine-tuning run evaluates with. A part of :class:`~.experiment.Experiment`, which
provides the data, the store and the protocol's settings it reads."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from torch import nn

from ...detectors import (FittedDetectors, Representations, check_detectors, detector_spec,
                          extract)
from ...images import ImageSet
from ...metrics import METRIC_KEYS, mean_metrics, ood_metrics
from .keys import eval_data_key, precision_key
from .runs import Evaluation, ModelRun
from .score_codes import FLOAT32, check_format, code_error, encode
from .store import Entry, canonical_json


class Scoring:
    """The scoring half of an experiment (mixed into :class:`~.experiment.Experiment`)."""

    def predictions(self, run: ModelRun) -> np.ndarray:
        """The predicted class of every ID test image (stored: paired accuracy comparisons
        resample the test images, which needs each image's outcome, not the mean)."""
        config = {"model": run.recipe, "data": eval_data_key(self.setup),
                  **precision_key(self.setup)}

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

    def representations(self, model: nn.Module, images: ImageSet) -> Representations:
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
                "data": eval_data_key(self.setup), **precision_key(self.setup),
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
