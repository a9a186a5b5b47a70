"""Forest plots: paired differences with their 95% intervals, a line at zero, each row's verdict or
reading beside it."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...results.catalog import GROUP_LABELS


#: The colour of a forest plot's point by its row's verdict.
VERDICT_COLOURS = {"holds": "#1a7f37", "MIM better": "#1a7f37", "does not hold": "#c0392b",
                   "MIM worse": "#c0392b", "partly": "#d4a017", "not resolved": "#6e7781",
                   "not judged": "#8c8c8c"}


_PANELS = {**GROUP_LABELS, "noise": "noise (OE paper): apart, not judged", "ID": "ID accuracy"}


#: Text size of the forest plots, in points at the figure's own size: the book shows a
#: figure about 7.5 inches wide at the page's width, so these stay at the body text's size.
FOREST_FONT = 12


def forest_plot(rows: pd.DataFrame, xlabel: str = "difference in AUROC") -> Figure:
    """A forest plot of paired differences (the rows of
    :func:`~mimlib.companion.analysis.claims.forest_frame`): one panel per group, stacked
    (near, far; noise and ID accuracy apart, each on its own scale), one row per setting and
    comparison (the best baseline named, where a row has one), a point and its 95% interval,
    a line at zero and the row's verdict beside it."""
    panels = [g for g in (*GROUP_LABELS, "ID") if g in set(rows["group"])]
    sizes = [len(rows[rows["group"] == g]) for g in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.5, 0.36 * sum(sizes) + 1.15 * len(panels)),
                             gridspec_kw={"height_ratios": sizes}, squeeze=False)
    for ax, group in zip(axes[:, 0], panels):
        part = rows[rows["group"] == group]
        y = np.arange(len(part))
        colours = [VERDICT_COLOURS.get(v, "k") for v in part["verdict"]]
        ax.axvline(0, color="k", lw=1)
        ax.hlines(y, part["low"], part["high"], colors=colours, lw=3)
        ax.scatter(part["estimate"], y, c=colours, s=45, zorder=3)
        for yi, verdict in zip(y, part["verdict"]):
            ax.text(1.02, yi, verdict, va="center", fontsize=FOREST_FONT,
                    color=VERDICT_COLOURS.get(verdict, "k"), transform=ax.get_yaxis_transform())
        labels = [f"{s}: {c}" + (f" ({a})" if a else "")
                  for s, c, a in zip(part["setting"], part["comparison"], part["against"])]
        ax.set_yticks(y, labels, fontsize=FOREST_FONT)
        ax.set_ylim(len(part) - 0.5, -0.5)
        ax.set_title(_PANELS[group], fontsize=FOREST_FONT, loc="left")
        ax.set_xlabel(("difference in accuracy" if group == "ID" else xlabel)
                      + ", 95% interval", fontsize=FOREST_FONT)
        ax.tick_params(axis="x", labelsize=FOREST_FONT)
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
        ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return fig


#: Colours of :func:`detector_forest`'s readings (a difference, not a claim: no verdict words).
READING_COLOURS = {"higher": "#1a7f37", "lower": "#c0392b", "not resolved": "#6e7781"}


def detector_forest(rows: pd.DataFrame, newer: Sequence[str] = ()) -> Figure:
    """Paired differences per detector (the rows of
    :func:`~mimlib.companion.analysis.other_detectors.forest_rows`): one column per
    comparison, one row of panels per protocol and OOD group, one line per detector (those in
    ``newer`` below a dashed rule, marked *), a point and its 95% interval, a line at zero;
    colours say whether the interval lies above zero, below it, or straddles it."""
    panels = [(p, g) for p in dict.fromkeys(rows["protocol"]) for g in GROUP_LABELS
              if ((rows["protocol"] == p) & (rows["group"] == g)).any()]
    comparisons = list(dict.fromkeys(rows["comparison"]))
    detectors = list(dict.fromkeys(rows["detector"]))
    fig, axes = plt.subplots(len(panels), len(comparisons), sharey=True, squeeze=False,
                             figsize=(7.5, (0.28 * len(detectors) + 1.5) * len(panels)))
    y = {d: i for i, d in enumerate(detectors)}
    labels = [f"{d} *" if d in newer else d for d in detectors]
    for r, (protocol, group) in enumerate(panels):
        for c, comparison in enumerate(comparisons):
            ax = axes[r, c]
            part = rows[(rows["protocol"] == protocol) & (rows["group"] == group)
                        & (rows["comparison"] == comparison)]
            ys = [y[d] for d in part["detector"]]
            colours = [READING_COLOURS.get(v, "k") for v in part["reading"]]
            ax.axvline(0, color="k", lw=1)
            ax.hlines(ys, part["low"], part["high"], colors=colours, lw=3)
            ax.scatter(part["estimate"], ys, c=colours, s=30, zorder=3)
            first_newer = [y[d] for d in detectors if d in newer]
            if first_newer:
                ax.axhline(min(first_newer) - 0.5, color="0.5", lw=0.8, ls="--")
            ax.set_yticks(range(len(detectors)), labels, fontsize=FOREST_FONT)
            ax.set_ylim(len(detectors) - 0.5, -0.5)
            ax.set_title(f"{GROUP_LABELS[group]}, {protocol} protocol\n{comparison}",
                         fontsize=FOREST_FONT, loc="left")
            ax.tick_params(axis="x", labelsize=FOREST_FONT)
            ax.xaxis.set_major_locator(plt.MaxNLocator(4))
            ax.grid(axis="y", visible=False)
            if r == len(panels) - 1:
                ax.set_xlabel("difference in AUROC, 95% interval", fontsize=FOREST_FONT)
    fig.tight_layout()
    return fig
