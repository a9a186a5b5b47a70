"""A trained model as the store knows it (its recipe, log and lazily loaded weights) and an
evaluation's rows and per-image scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from torch import nn


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
