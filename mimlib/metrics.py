"""OOD detection metrics from confidence scores (higher = more in-distribution, as MSP).

Conventions, fixed here and in the book:

* ``auroc``: probability that a random ID sample scores higher than a random OOD sample (ties
  count half). It does not depend on which class is called positive.
* ``aupr_in``: area under the precision-recall curve with ID as the positive class;
  ``aupr_out``: the same with OOD as the positive class (lower score = more likely OOD).
  Both use the trapezoidal rule over the curve of ``sklearn.metrics.precision_recall_curve``,
  i.e. ``sklearn.metrics.auc(recall, precision)``, as pytorch-ood does. **The paper's "AUPR"
  column is the OOD-positive one, ``aupr_out``** (pytorch-ood 0.1.6 named it ``AUPR-IN``).
* ``fpr95``: the fraction of OOD samples accepted as ID at the threshold that keeps 95% of the ID
  samples (the highest threshold t with at least 95% of ID scores >= t). pytorch-ood's
  ``FPR95TPR`` is the mirror image (ID samples flagged at 95% of OOD detected); the two agree
  only after swapping the roles of ID and OOD.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .checks import interval
from .errors import ConfigError

METRIC_KEYS = ("auroc", "aupr_in", "aupr_out", "fpr95")


def _as_1d_float(scores: object, name: str) -> np.ndarray:
    if isinstance(scores, torch.Tensor):  # float64 first: NumPy has no bf16
        scores = scores.detach().cpu().double().numpy()
    try:
        arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be numbers, got {scores!r:.80}") from err
    if arr.size == 0:
        raise ConfigError(f"{name} is empty: every metric needs ID and OOD scores")
    if np.isnan(arr).any():
        raise ConfigError(f"{name} contains NaN scores; the detector or the model is broken")
    return arr


def _counts(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (true positives, false positives) at each distinct threshold, high to low."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    last = np.r_[s[1:] != s[:-1], True]  # last index of every group of tied scores
    tps = np.cumsum(positive[order])[last].astype(np.float64)
    fps = (np.flatnonzero(last) + 1) - tps
    return tps, fps


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    """Signed trapezoidal area under y(x) for a curve inside the unit square, kept inside [-1, 1]:
    summed in floating point, a perfect detector's area came out as 1.0000000000000002."""
    area = math.fsum((x[1:] - x[:-1]) * (y[1:] + y[:-1])) / 2.0
    return min(max(area, -1.0), 1.0)


def _aupr(tps: np.ndarray, fps: np.ndarray) -> float:
    """Trapezoidal area under sklearn's precision-recall curve (ends at recall 0, precision 1)."""
    precision = np.r_[(tps / (tps + fps))[::-1], 1.0]  # low threshold first, as sklearn
    recall = np.r_[(tps / tps[-1])[::-1], 0.0]
    return -_trapezoid(recall, precision)  # recall decreases along the curve


def ood_metrics(id_scores: object, ood_scores: object, *, tpr: float = 0.95) -> dict[str, float]:
    """AUROC, AUPR-IN, AUPR-OUT and FPR at ``tpr`` (key ``fpr95``) for one ID/OOD pair.

    Scores follow the MSP convention: higher means more in-distribution. Accepts tensors or
    arrays of any shape (flattened). See the module docstring for the exact definitions.
    """
    interval(tpr, "tpr", 0, 1, open_low=True)
    s_id = _as_1d_float(id_scores, "id_scores")
    s_ood = _as_1d_float(ood_scores, "ood_scores")
    scores = np.concatenate([s_id, s_ood])
    is_id = np.r_[np.ones(s_id.size, bool), np.zeros(s_ood.size, bool)]

    tps, fps = _counts(scores, is_id)  # ID positive, high score first
    tpr_curve = np.r_[0.0, tps / s_id.size]
    fpr_curve = np.r_[0.0, fps / s_ood.size]
    auroc = _trapezoid(fpr_curve, tpr_curve)
    first = int(np.searchsorted(tpr_curve, tpr, side="left"))
    fpr_at = float(fpr_curve[first])

    tps_out, fps_out = _counts(-scores, ~is_id)  # OOD positive, low score first
    return {
        "auroc": auroc,
        "aupr_in": _aupr(tps, fps),
        "aupr_out": _aupr(tps_out, fps_out),
        "fpr95": fpr_at,
    }


def mean_metrics(per_set: Sequence[dict[str, float]]) -> dict[str, float]:
    """Unweighted mean of each metric over OOD sets, as the paper's "average" rows."""
    if not per_set:
        raise ConfigError("mean_metrics needs at least one OOD set")
    return {key: float(np.mean([m[key] for m in per_set])) for key in per_set[0]}
