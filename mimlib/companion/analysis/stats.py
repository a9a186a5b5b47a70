"""Paired comparisons with confidence intervals: the evidence a verdict needs.

Two arms (say MIM and its control) are scored on the same test images under the same
fine-tuning seeds. A difference between them varies with the seeds and with the test images
drawn, so its interval resamples both at once (a crossed bootstrap through
``scipy.stats.bootstrap``: the seeds, the ID test images and each OOD set's images drawn with
replacement, independently; every arm is scored on the same draw, which is the pairing). An arm
that has no seeds (a post-hoc detector on the model before fine-tuning) is the same under
every seed. AUROC on a weighted draw is computed exactly, from each image's count in the draw.

The intervals are computed once: :func:`stored_auroc_difference` and
:func:`stored_mean_difference` keep each in the results store (kind ``interval``), keyed by a
digest of the scores it resamples, the sets, the resample count, the confidence and the seed,
so a page drawn again from the store reads them instead of bootstrapping again.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
from scipy import stats

if TYPE_CHECKING:  # the store-backed forms take an experiment; the rest is plain numpy
    from ..results.experiment import Experiment

#: Scores of one arm: per seed, per set ("__id__" for the ID test images), one score per image.
ArmScores = Sequence[Mapping[str, np.ndarray]]

CONFIDENCE = 0.95
N_RESAMPLES = 2000
BATCH = 100  # resamples per vectorised call (memory: BATCH x images floats per array)


@dataclass(frozen=True)
class Interval:
    """A difference (first arm minus second), its confidence interval and what it rests on."""

    estimate: float
    low: float
    high: float
    seeds: int
    confidence: float = CONFIDENCE
    method: str = "bootstrap over seeds and test images"

    def side(self) -> int:
        """+1 if the interval lies above zero, -1 if below, 0 if it straddles zero."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def text(self, digits: int = 4) -> str:
        """'+0.0123 [+0.0080, +0.0170]'."""
        return (f"{self.estimate:+.{digits}f} [{self.low:+.{digits}f}, "
                f"{self.high:+.{digits}f}]")


def auroc_difference(a: ArmScores, b: ArmScores, sets: Sequence[str], *,
                     n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                     seed: int = 0) -> Interval:
    """Mean over seeds of the mean AUROC over ``sets`` of arm ``a`` minus that of ``b`` (higher
    scores mean ID), with its bootstrap interval. An arm with one entry is the same under every
    seed; otherwise both arms have one entry per seed, in the same order."""
    if not sets:
        raise ValueError("no OOD sets to compare on")
    a, b, n_seeds = _paired_seeds(a, b)
    n_id = len(a[0]["__id__"])
    sizes = [len(a[0][name]) for name in sets]
    terms = [[tuple(_PlacedAUROC(arm[s]["__id__"], arm[s][name]) for arm in (a, b))
              for name in sets] for s in range(n_seeds)]

    def statistic(*draws: np.ndarray, axis: int = -1) -> np.ndarray:
        seed_w, id_draw, *ood_draws = _seed_weights(draws, n_seeds)
        id_w = _counts(id_draw, n_id)
        ood_w = [_counts(draw, size) for draw, size in zip(ood_draws, sizes)]
        total = np.zeros(len(seed_w))
        for s in range(n_seeds):
            diff = sum(first(id_w, w) - second(id_w, w)
                       for (first, second), w in zip(terms[s], ood_w))
            total += seed_w[:, s] * diff / len(sets)
        return _squeeze(total / n_seeds, id_draw)

    data = (np.arange(n_id), *[np.arange(m) for m in sizes])
    return _bootstrap(statistic, data, n_seeds, n_resamples, confidence, seed)


def mean_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray], *,
                    n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                    seed: int = 0) -> Interval:
    """Mean over seeds of the mean over images of ``a - b`` (one value per image, e.g. 1 for a
    correct prediction: the accuracy difference), bootstrapped over seeds and images."""
    a_list, b_list, n_seeds = _paired_seeds([{"x": x} for x in a], [{"x": x} for x in b])
    diffs = np.stack([np.asarray(x["x"], float) - np.asarray(y["x"], float)
                      for x, y in zip(a_list, b_list)])  # (seeds, images)
    n = diffs.shape[1]

    def statistic(*draws: np.ndarray, axis: int = -1) -> np.ndarray:
        seed_w, image_draw = _seed_weights(draws, n_seeds)
        per_seed = _counts(image_draw, n) @ diffs.T / n  # (draws, seeds)
        return _squeeze((seed_w * per_seed).sum(1) / n_seeds, image_draw)

    return _bootstrap(statistic, (np.arange(n),), n_seeds, n_resamples, confidence, seed)


def seed_difference(a: Sequence[float], b: Sequence[float], *,
                    confidence: float = CONFIDENCE) -> Interval:
    """Mean of the paired differences ``a - b`` over seeds with Student's t interval: for
    quantities with no per-image scores kept (the points of a curve during training)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return Interval(float(d.mean()), -np.inf, np.inf, len(d), confidence,
                        "one seed: no interval")
    if np.ptp(d) == 0:  # every seed the same difference: no spread to widen it
        return Interval(float(d[0]), float(d[0]), float(d[0]), len(d), confidence,
                        "t interval over seeds")
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence)
    return Interval(float(d.mean()), float(ci.low), float(ci.high), len(d), confidence,
                    "t interval over seeds")


def scores_digest(arm: ArmScores | Sequence[np.ndarray]) -> str:
    """SHA-256 of an arm's scores, seed by seed (set names, dtypes, shapes and bytes): what a
    stored interval is keyed by, so the same scores find the same interval."""
    h = hashlib.sha256()
    for seed_scores in arm:
        items = seed_scores.items() if isinstance(seed_scores, Mapping) else [("", seed_scores)]
        for name, values in sorted(items, key=lambda item: item[0]):
            x = np.ascontiguousarray(values)
            h.update(f"{name}|{x.dtype.str}|{x.shape}|".encode())
            h.update(x.tobytes())
        h.update(b"/")
    return h.hexdigest()


def stored_auroc_difference(exp: "Experiment", a: ArmScores, b: ArmScores,
                            sets: Sequence[str], *, n_resamples: int = N_RESAMPLES,
                            confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """:func:`auroc_difference`, computed once and kept in ``exp``'s results store."""
    inputs = {"a": scores_digest(a), "b": scores_digest(b), "sets": list(sets)}
    return _stored(exp, "auroc_difference", inputs, n_resamples, confidence, seed,
                   lambda: auroc_difference(a, b, sets, n_resamples=n_resamples,
                                            confidence=confidence, seed=seed))


def stored_mean_difference(exp: "Experiment", a: Sequence[np.ndarray], b: Sequence[np.ndarray],
                           *, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                           seed: int = 0) -> Interval:
    """:func:`mean_difference`, computed once and kept in ``exp``'s results store."""
    inputs = {"a": scores_digest(a), "b": scores_digest(b)}
    return _stored(exp, "mean_difference", inputs, n_resamples, confidence, seed,
                   lambda: mean_difference(a, b, n_resamples=n_resamples,
                                           confidence=confidence, seed=seed))


def _stored(exp: "Experiment", what: str, inputs: dict, n_resamples: int, confidence: float,
            seed: int, compute: Callable[[], Interval]) -> Interval:
    config = {"what": what, **inputs, "n_resamples": n_resamples, "confidence": confidence,
              "seed": seed, "method": Interval.method}
    entry = exp.stored("interval", config,
                       lambda: ({"interval": dataclasses.asdict(compute())}, None))
    return Interval(**entry.record["result"]["interval"])


class _PlacedAUROC:
    """AUROC of ID against OOD scores for any weighting of the images (counts in a draw): the
    OOD scores sorted once, each ID score's place among them found once."""

    def __init__(self, id_scores: np.ndarray, ood_scores: np.ndarray) -> None:
        ood = np.asarray(ood_scores, np.float64)
        self.order = np.argsort(ood, kind="stable")
        ranked = ood[self.order]
        ids = np.asarray(id_scores, np.float64)
        self.below = np.searchsorted(ranked, ids, side="left")
        self.not_above = np.searchsorted(ranked, ids, side="right")

    def __call__(self, id_w: np.ndarray, ood_w: np.ndarray) -> np.ndarray:
        """AUROC per draw; ``id_w`` (draws, n_id) and ``ood_w`` (draws, n_ood) are counts."""
        cum = np.concatenate([np.zeros((len(ood_w), 1)), np.cumsum(ood_w[:, self.order], 1)], 1)
        lower, upper = cum[:, self.below], cum[:, self.not_above]
        wins = lower + 0.5 * (upper - lower)  # OOD images below each ID image, ties half
        return (id_w * wins).sum(1) / (id_w.sum(1) * ood_w.sum(1))


def _counts(draw: np.ndarray, n: int) -> np.ndarray:
    """How often each of n items occurs in each draw: (draws, n) from index draws (draws, k)."""
    draw = np.atleast_2d(np.asarray(draw)).astype(np.int64)
    offsets = (np.arange(len(draw)) * n)[:, None]
    return np.bincount((draw + offsets).ravel(), minlength=len(draw) * n).reshape(len(draw), n)


def _seed_weights(draws: tuple[np.ndarray, ...], n_seeds: int) -> list:
    """The seed counts of each draw (all ones for a single seed, which is not resampled) and
    the remaining draws."""
    if n_seeds == 1:
        return [np.ones((len(np.atleast_2d(draws[0])), 1)), *draws]
    return [_counts(draws[0], n_seeds), *draws[1:]]


def _squeeze(values: np.ndarray, draw: np.ndarray) -> np.ndarray:
    return values[0] if np.ndim(draw) == 1 else values


def _paired_seeds(a: ArmScores, b: ArmScores) -> tuple[list, list, int]:
    a, b = list(a), list(b)
    n = max(len(a), len(b))
    if len(a) not in (1, n) or len(b) not in (1, n):
        raise ValueError(f"arms with {len(a)} and {len(b)} seeds cannot be paired")
    return (a * n if len(a) == 1 else a), (b * n if len(b) == 1 else b), n


def _bootstrap(statistic: Callable[..., np.ndarray], data: tuple[np.ndarray, ...],
               n_seeds: int, n_resamples: int, confidence: float, seed: int) -> Interval:
    if n_seeds > 1:  # the seeds are drawn too (first); one seed is not resampled
        data = (np.arange(n_seeds), *data)
    estimate = float(statistic(*data))
    result = stats.bootstrap(data, statistic, paired=False, vectorized=True,
                             n_resamples=n_resamples, batch=BATCH, method="percentile",
                             confidence_level=confidence, random_state=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Interval(estimate, float(ci.low), float(ci.high), n_seeds, confidence)
