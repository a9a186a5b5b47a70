"""Re-derive committed results from the data: the check that the book's numbers are reproducible.

Two computations are repeated in a scratch store and compared with the committed entries: one
Table-1 cell set of the published model as it is (MSP on every OOD set; no training), and a
short MIM fine-tuning from the committed adapted base (its per-step losses, then the MSP metrics
of the result). On the same kind of CPU they agree bit for bit; ``tolerance`` allows for other
BLAS builds or thread counts.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .experiment import Experiment, Setup
from .store import Store

SHORT_RUN_STEPS = 5


@dataclass
class Comparison:
    """One re-derived number beside its committed value."""

    what: str
    committed: float
    recomputed: float

    @property
    def difference(self) -> float:
        return abs(self.recomputed - self.committed)


def short_run(exp: Experiment) -> Any:
    """The short fine-tuning whose result is committed for this check."""
    return exp.mim_model(exp.base_model(), steps=SHORT_RUN_STEPS)


def rederive(setup: Setup, committed_root: str | Path, *, profile: str | None = None,
             record: bool = False) -> list[Comparison]:
    """Recompute the check's results from the data and return them beside the committed ones.

    With ``record=True`` missing committed entries are computed into the committed store first
    (how they were made, labelled with ``profile``); otherwise a missing one is an error.
    """
    committed = Store(committed_root)
    ref = Experiment(setup, committed, profile=profile)
    loaded = ref.loaded_model()
    if not record:
        missing = [what for what, entry in (
            ("MSP of the published model",
             committed.get("scores", ref.detector_config(loaded, "MSP"))),
            ("the short run",
             committed.get("finetune", ref.mim_recipe(ref.base_model(), steps=SHORT_RUN_STEPS))))
            if entry is None]
        if missing:
            raise FileNotFoundError(f"no committed entry for {', '.join(missing)} in "
                                    f"{committed_root}; run with record=True once")
    ref_cell = ref.evaluate(loaded, ("MSP",))
    ref_run = short_run(ref)
    ref_short = ref.evaluate(ref_run, ("MSP",))
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Store(tmp)
        base = ref.base_model()  # the committed adapted weights are the short run's start
        src = committed.path("adapt", base.recipe)
        if src.exists():
            shutil.copytree(src, scratch.path("adapt", base.recipe))
        exp = Experiment(setup, scratch)
        cell = exp.evaluate(exp.loaded_model(), ("MSP",))
        run = short_run(exp)
        short = exp.evaluate(run, ("MSP",))
    out = [Comparison(f"published model, MSP {metric} on {r['ood']}", c[metric], r[metric])
           for c, r in zip(ref_cell.rows, cell.rows) for metric in ("auroc", "fpr95")]
    out += [Comparison(f"short run, step {a['step']} {name}", a[name], b[name])
            for a, b in zip(ref_run.log, run.log) for name in ("loss_id", "loss_out")]
    out += [Comparison(f"short run, MSP {metric} on {r['ood']}", c[metric], r[metric])
            for c, r in zip(ref_short.rows, short.rows) for metric in ("auroc",)]
    return out


def worst(comparisons: list[Comparison]) -> float:
    """The largest absolute difference (NaN-safe: a NaN anywhere is infinitely bad)."""
    return max((c.difference if not math.isnan(c.difference) else math.inf)
               for c in comparisons)
