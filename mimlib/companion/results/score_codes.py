"""How per-image scores are kept in the store: float32 as computed, or as one byte per image.

A detector's per-image scores enter the book only through their order (AUROC, FPR95 and the
paired bootstrap of :mod:`.analysis.stats` are rank statistics of ID against OOD scores), so an
entry may keep, instead of float32 values, each image's bin among 256 equal-count bins of all
its scores pooled (ID test images and every OOD set): a quarter of the bytes, the order kept
except within a bin, where ties count half. Every stored metric is still computed from the
float64 scores; the entry records how far the codes' AUROC is from it
(:func:`code_error`), so a page that resamples codes can say how close it is.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ...errors import ConfigError
from ...metrics import ood_metrics

#: The ways a scores entry keeps per-image scores.
FLOAT32, QUANTILE8 = "float32", "quantile-uint8"
SCORE_FORMATS = (FLOAT32, QUANTILE8)
_BINS = 256


def check_format(name: object) -> str:
    """The format's name, or :class:`ConfigError` naming the choices."""
    if name not in SCORE_FORMATS:
        raise ConfigError(f"scores are stored as one of {list(SCORE_FORMATS)}, not {name!r}")
    return str(name)


def encode(scores: Mapping[str, np.ndarray], fmt: str) -> dict[str, np.ndarray]:
    """Per-set scores as ``fmt`` keeps them: float32, or uint8 codes of pooled quantile bins
    (higher code = higher score; every set coded on the same bins, so order across sets is
    kept up to ties within a bin)."""
    if check_format(fmt) == FLOAT32:
        return {name: np.asarray(v).astype(np.float32) for name, v in scores.items()}
    pooled = np.concatenate([np.asarray(v, np.float64) for v in scores.values()])
    if not np.isfinite(pooled).all():
        raise ConfigError("scores with NaN or infinite values cannot be coded; keep them as "
                          "float32 to see which images give them")
    edges = np.quantile(pooled, np.linspace(0, 1, _BINS + 1)[1:-1])
    return {name: np.searchsorted(edges, np.asarray(v, np.float64), side="right")
            .astype(np.uint8) for name, v in scores.items()}


def code_error(scores: Mapping[str, np.ndarray], codes: Mapping[str, np.ndarray],
               id_key: str = "__id__") -> float:
    """The largest difference, over the OOD sets, between the AUROC of the codes and that of
    the scores they code (0 for float32)."""
    return max((abs(ood_metrics(codes[id_key], codes[name])["auroc"]
                    - ood_metrics(scores[id_key], scores[name])["auroc"])
                for name in scores if name != id_key), default=0.0)
