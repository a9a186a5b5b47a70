"""The claims' verdict at a glance: every paired difference as the forest plots draw it, and the landing page's headline."""

from __future__ import annotations

import base64
from html import escape
from typing import Any
import pandas as pd
from .report import paper_numbers
from .stats import Interval
from .claims import HOLDS, JUDGED_GROUPS, NOT_RESOLVED, Judgement, side_verdict


def _better(interval: Interval) -> str:
    """A comparison that is no claim (MIM against its control): which arm is better."""
    return {1: "MIM better", -1: "MIM worse", 0: NOT_RESOLVED}[interval.side()]


#: The figures of :func:`forest_frame`: the verdict (MIM against its control and against the
#: best baseline) and the claims' other comparisons.
FOREST_FIGURES = ("verdict", "other")


NOT_JUDGED = "not judged"


def forest_frame(claims: pd.DataFrame) -> pd.DataFrame:
    """Every paired difference the verdicts rest on, one row each, as the forest plots draw
    them: ``figure`` (``verdict``: MIM minus its control and minus the best baseline, per
    group; ``other``: k > 5, augmentation, one epoch, accuracy), ``setting`` (the claims
    column), ``comparison`` (in words), ``group`` (near, far, noise; ``ID`` for accuracy),
    ``estimate``, ``low``, ``high`` (the claims table's intervals, the same objects),
    ``verdict`` (the row's reading by its claim's rule; MIM better / worse for the control,
    which no claim is about; noise is shown, not judged),
    ``against`` (the best baseline, for that comparison) and ``method`` (how the interval
    was computed)."""
    judgements: dict[str, list[Judgement]] = claims.attrs["judgements"]
    rows: list[dict[str, Any]] = []

    def add(figure: str, setting: str, comparison: str, group: str, interval: Interval,
            verdict: str, against: str = "") -> None:
        rows.append({"figure": figure, "setting": setting, "comparison": comparison,
                     "group": group, "estimate": interval.estimate, "low": interval.low,
                     "high": interval.high,
                     "verdict": verdict if group in (*JUDGED_GROUPS, "ID") else NOT_JUDGED,
                     "against": against, "method": interval.method})

    for setting, (baselines, accuracy, epoch, k, augment, _cost) in judgements.items():
        for group, g in baselines.intervals.items():
            add("verdict", setting, "MIM − control", group, g["vs_control"],
                _better(g["vs_control"]))
            add("verdict", setting, "MIM − best", group, g["vs_best"],
                side_verdict(g["vs_best"]), g["best"])
        for group, interval in k.intervals.items():
            add("other", setting, "k > 5 − k ≤ 5", group, interval,
                side_verdict(interval))
        for group, interval in augment.intervals.items():
            add("other", setting, "augment on − off", group, interval,
                side_verdict(interval))
        for group, g in epoch.intervals.items():
            add("other", setting, "epoch end − 2/3", group, g["rise"], g["verdict"])
        if "all" in accuracy.intervals:  # judged by its tolerance: the claim's verdict
            add("other", setting, "MIM − control", "ID",
                accuracy.intervals["all"], accuracy.verdict)
    return pd.DataFrame(rows, columns=["figure", "setting", "comparison", "group", "estimate",
                                       "low", "high", "verdict", "against", "method"])


def landing_headline(claims: pd.DataFrame, forest_png: bytes, described: str,
                     link: str = "executed/15_claims.html") -> str:
    """The book's opening result as HTML (the landing page pastes it): the paper's claim, the
    forest plot of the verdict (``forest_png``, a PNG, embedded: MIM minus its control and minus the
    best baseline per OOD group and protocol) with a caption that says what it compares on
    what (``described``: data and model in readers' words), then one line per protocol: how
    many of the paper's claims hold there; the details one link away."""
    paper = paper_numbers()
    mim = paper[(paper.table == "table1") & (paper.method == "MIM")
                & (paper.ood_dataset == "average")].set_index("id_dataset")["auroc"]
    judgements: dict[str, list[Judgement]] = claims.attrs["judgements"]
    items = [f"<li><b>{escape(label)}:</b> The paper's claims that hold here: "
             f"{sum(j.verdict == HOLDS for j in js)} of {len(js)}.</li>"
             for label, js in judgements.items() if js[0].intervals]
    first = next(iter(judgements.values()))[0].intervals
    n_seeds = next(iter(first.values()))["vs_control"].seeds if first else 0
    image = base64.b64encode(forest_png).decode("ascii")
    caption = (f"MIM minus its control (the same fine-tuning without mixed images) and minus "
               f"the best post-hoc baseline, AUROC per OOD group and protocol: a point and its "
               f"95% interval (mean of {n_seeds} fine-tuning seeds, paired bootstrap), the "
               f"verdict beside it; {described}.")
    return (
        '<div class="mimlib-headline">'
        "<p><b>The paper's claim:</b> one epoch of MIM fine-tuning makes the maximum softmax "
        "probability beat every post-hoc OOD detector (mean AUROC "
        f"{mim['cifar10']:.4f} on CIFAR-10 with a WRN-40-2 and seven OOD sets, "
        f"{mim['cifar100']:.4f} on CIFAR-100).</p>"
        "<p><b>What we measure:</b></p>"
        f'<figure class="mimlib-forest"><img src="data:image/png;base64,{image}" '
        f'alt="{escape(caption)}" style="width: 100%"/>'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
        f"<ul>{''.join(items)}</ul>"
        f'<p>Each claim, its evidence and its rule: <a href="{escape(link)}">the paper\'s '
        "claims, tested</a>.</p></div>")
