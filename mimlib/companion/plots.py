"""The book's figures, each built from a tidy table (one source per figure); data sets,
models and protocols in their titles, legends and ticks by their readers' names
(:func:`mimlib.companion.labels.readers_label`), whatever names the table carries.

seaborn is imported inside the figures that draw with it: it takes about a second, which a
script plotting one bar chart (or ``import mimlib.companion.plots`` in a test) need not pay."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from .catalog import GROUP_LABELS
from .labels import readers_label
from .report import EXPORT_DPI, group_mean_name

PALETTE = {"ID": "#1f77b4", "mixed": "#ff7f0e", "OOD": "#7f7f7f"}


def _as_image(x: torch.Tensor) -> np.ndarray:
    """A [0, 1] pixel image (3, H, W) as matplotlib wants it."""
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def mixing_gallery(batches: dict[str, dict[int, torch.Tensor]],
                   msp: dict[str, dict[int, np.ndarray]], n: int) -> Figure:
    """Rows: k; columns: n mixed images, without and with post-mix augmentation; MSP on top."""
    variants = list(batches)
    ks = list(batches[variants[0]])
    cols, rows = n * len(variants), len(ks)
    fig, axes = plt.subplots(rows, cols, figsize=(0.8 * cols + 0.5, 0.95 * rows + 0.7),
                             squeeze=False)
    for r, k in enumerate(ks):
        for v, variant in enumerate(variants):
            for c in range(n):
                ax = axes[r, v * n + c]
                ax.imshow(_as_image(batches[variant][k][c]))
                ax.set_xticks([]), ax.set_yticks([])
                ax.grid(False)
                ax.set_title(f"{msp[variant][k][c]:.2f}", fontsize=7, pad=2)
                for side in ax.spines.values():
                    side.set_visible(False)
                if c == 0 and v == 0:
                    ax.set_ylabel(f"k = {k}", fontsize=8)
                if r == 0 and c == 0:
                    ax.text(0, 1.45, variant, transform=ax.transAxes, fontsize=8,
                            fontweight="bold")
    fig.suptitle("Mixed images and the classifier's MSP (number above each image)", fontsize=9)
    # fixed margins: tight_layout shrinks a grid of 96 titled images to a quarter of its cells
    fig.subplots_adjust(left=0.03, right=0.995, top=1 - 0.75 / (0.95 * rows + 0.7),
                        bottom=0.3 / (0.95 * rows + 0.7), wspace=0.08, hspace=0.4)
    return fig


def mixing_statistics(stats: pd.DataFrame) -> Figure:
    """Pixel contrast, fine detail and mean MSP against k, without and with augmentation."""
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.8))
    for (augmented, group), style in zip(stats.groupby("augmented"), ("-o", "--s")):
        name = "augmented" if augmented else "mixed only"
        for ax, col, title in zip(axes, ("pixel_std", "laplacian", "mean_msp"),
                                  ("pixel std (contrast)", "mean |Laplacian| (detail)",
                                   "mean MSP of the classifier")):
            ax.plot(group["k"], group[col], style, label=name, ms=4)
            ax.set_xscale("log")
            ax.set_xticks(sorted(stats["k"].unique()), [str(k) for k in sorted(stats["k"].unique())])
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("k")
    axes[0].legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def training_curves(log: pd.DataFrame | None, per_class: pd.DataFrame) -> Figure:
    """Training loss and batch accuracy per step (when trained here) and test accuracy per class."""
    panels = 3 if log is not None and len(log) else 1
    fig, axes = plt.subplots(1, panels, figsize=(3.3 * panels, 2.8), squeeze=False)
    axes = axes[0]
    if panels == 3:
        axes[0].plot(log["step"], log["loss_id"], lw=0.8)
        axes[0].set_title("training loss (cross-entropy)", fontsize=9)
        axes[0].set_yscale("log")
        axes[1].plot(log["step"], log["acc_id"].rolling(20, min_periods=1).mean(), lw=0.8)
        axes[1].set_title("batch accuracy (20-step mean)", fontsize=9)
        for ax in axes[:2]:
            ax.set_xlabel("step")
    ax = axes[-1]
    ax.barh(per_class["class"], per_class["accuracy"], color="#1f77b4")
    ax.set_xlim(0, 1)
    ax.set_title("test accuracy per class", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def finetune_curves(log: pd.DataFrame, evals: pd.DataFrame) -> Figure:
    """Both losses, batch accuracy and MSP on ID and mixed images per step; AUROC every N."""
    fig, grid = plt.subplots(2, 2, figsize=(8.6, 5.6))
    axes = grid.ravel()
    axes[0].plot(log["step"], log["loss_id"], label="CE on ID", lw=0.9)
    axes[0].plot(log["step"], log["loss_out"], label="CE to uniform on mixed", lw=0.9)
    axes[0].axhline(np.log(_classes_from_msp(log)), color="0.5", ls=":", lw=0.8,
                    label="log C (uniform)")
    axes[0].legend(fontsize=7)
    axes[0].set_title("losses", fontsize=9)
    axes[1].plot(log["step"], log["acc_id"], lw=0.9)
    axes[1].set_title("ID batch accuracy", fontsize=9)
    axes[2].plot(log["step"], log["msp_id"], label="ID", lw=0.9)
    axes[2].plot(log["step"], log["msp_out"], label="mixed", lw=0.9)
    axes[2].legend(fontsize=7)
    axes[2].set_title("mean MSP per batch", fontsize=9)
    if len(evals):
        axes[3].plot(evals["step"], evals["mean_auroc"], "-o", ms=3, label="mean AUROC (MSP)")
        best = evals.loc[evals["mean_auroc"].idxmax()]
        axes[3].scatter([best["step"]], [best["mean_auroc"]], s=60, facecolors="none",
                        edgecolors="C3", label=f"peak at step {int(best['step'])}")
        ax2 = axes[3].twinx()
        ax2.plot(evals["step"], evals["accuracy"], "--", color="C2", lw=0.9, label="ID accuracy")
        ax2.set_ylabel("ID accuracy (dashed)", fontsize=8)
        ax2.grid(False)
        axes[3].legend(fontsize=7, loc="lower right")
    axes[3].set_title("evaluation during fine-tuning", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def auroc_curves(curves: dict[str, pd.DataFrame]) -> Figure:
    """Mean AUROC (MSP) against the fine-tuning step, one line per run, peaks circled."""
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    if not curves:
        ax.text(0.5, 0.5, "no run committed yet", ha="center", va="center",
                transform=ax.transAxes)
    for i, (name, evals) in enumerate(curves.items()):
        ax.plot(evals["step"], evals["mean_auroc"], "-o", ms=3, color=f"C{i}",
                label=readers_label(name))
        best = evals.loc[evals["mean_auroc"].idxmax()]
        ax.scatter([best["step"]], [best["mean_auroc"]], s=70, facecolors="none",
                   edgecolors=f"C{i}")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("mean AUROC (MSP)")
    if curves:
        ax.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _classes_from_msp(log: pd.DataFrame) -> float:
    """The number of classes is not in the log; the floor of the MSP curve, 1/C, bounds it."""
    return max(2.0, round(1.0 / max(float(log["msp_out"].min()), 1e-6)))


def method_bars(table: pd.DataFrame, metric: str = "auroc") -> Figure:
    """Mean metric per method and (ID set, protocol): one panel per group of OOD sets
    (near-OOD, far-OOD, the noise sets apart), and the average over the paper's sets beside
    the paper's (black ticks) only where the sets are the paper's."""
    settings = list(table.groupby(["id_data", "protocol"], sort=False))
    means = [(group_mean_name(g), "noise (apart)" if g == "noise" else GROUP_LABELS[g])
             for g in GROUP_LABELS]
    paper = "paper_auroc" in table and metric == "auroc" and table.loc[
        table["ood"] == "average", "paper_auroc"].notna().any()
    panels = [(name, title) for name, title in means if name in set(table["ood"])] + (
        [("average", "mean over the paper's sets")] if paper else [])
    methods = list(dict.fromkeys(table.loc[table["ood"] == panels[0][0], "method"]))
    fig, axes = plt.subplots(len(settings), len(panels), sharey=True, squeeze=False,
                             figsize=(7.5, (0.3 * len(methods) + 1.2) * len(settings)))
    for row, ((id_data, protocol), df) in zip(axes, settings):
        for ax, (name, title) in zip(row, panels):
            avg = df[df["ood"] == name].set_index("method").reindex(methods)
            y = np.arange(len(methods))
            ax.barh(y, avg[metric], color=["C3" if m == "MIM" else "C0" for m in methods])
            if name == "average":
                ax.scatter(avg["paper_auroc"], y, marker="|", s=200, color="k", label="paper")
                ax.legend(fontsize=11, loc="lower right")
            ax.set_yticks(y, methods, fontsize=11)
            ax.set_ylim(len(methods) - 0.5, -0.5)
            lo = max(0.0, float(np.nanmin(avg[metric])) - 0.05)
            ax.set_xlim(lo, 1.0)
            ax.xaxis.set_major_locator(plt.MaxNLocator(3))
            ax.tick_params(axis="x", labelsize=11)
            ax.set_title(title, fontsize=11)
        row[0].set_ylabel(f"{readers_label(id_data)},\n{readers_label(protocol)}", fontsize=11)
    fig.supxlabel(f"mean {metric.upper()}", fontsize=11)
    fig.tight_layout()
    return fig


def embedding_scatter(frames: dict[str, pd.DataFrame], coords: dict[str, np.ndarray]) -> Figure:
    """2-D embeddings side by side (e.g. before / after fine-tuning), coloured by group kind."""
    fig, axes = plt.subplots(1, len(frames), figsize=(4.4 * len(frames), 4.0), squeeze=False)
    for ax, (title, frame) in zip(axes[0], frames.items()):
        xy = coords[title]
        for kind, marker in (("OOD", "x"), ("mixed", "^"), ("ID", "o")):
            sel = (frame["kind"] == kind).to_numpy()
            ax.scatter(xy[sel, 0], xy[sel, 1], s=5, marker=marker, alpha=0.5, c=PALETTE[kind],
                       label=kind)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    axes[0][0].legend(fontsize=8, markerscale=3)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def msp_distributions(frames: dict[str, pd.DataFrame]) -> Figure:
    """MSP densities (seaborn KDE, clipped to [0, 1]) and ECDFs of the ID images, the mixed
    images and each OOD set, one column per model."""
    import seaborn as sns

    fig, axes = plt.subplots(2, len(frames), figsize=(4.6 * len(frames), 5.4), squeeze=False)
    for col, (title, frame) in enumerate(frames.items()):
        groups = [(g, df) for g, df in frame.groupby("group", sort=False)
                  if df["kind"].iloc[0] != "ID"]  # ID classes are drawn as one curve
        styles = _group_styles([df["kind"].iloc[0] for _, df in groups])
        for (name, values), style in zip([("ID (all classes)", frame[frame.kind == "ID"]["msp"])]
                                         + [(readers_label(g), df["msp"]) for g, df in groups],
                                         [dict(color=PALETTE["ID"], lw=1.8, ls="-")] + styles):
            values = values.to_numpy(dtype=float)
            if np.ptp(values) > 0:  # a KDE of one repeated value has no bandwidth
                sns.kdeplot(x=values, ax=axes[0, col], clip=(0, 1), cut=0, label=name,
                            warn_singular=False, **style)
            sns.ecdfplot(x=values, ax=axes[1, col], label=name, **style)
        axes[0, col].set_title(f"{title}: MSP density", fontsize=9)
        axes[1, col].set_title(f"{title}: MSP ECDF", fontsize=9)
        axes[1, col].set_xlabel("maximum softmax probability")
        axes[0, col].set_xlabel("")
    handles, labels = axes[1, -1].get_legend_handles_labels()  # every set (a KDE may be absent)
    axes[0, -1].legend(handles, labels, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _group_styles(kinds: list[str]) -> list[dict[str, Any]]:
    """One distinct line style per group: mixed sets in darkening oranges (dashed), OOD sets in
    the remaining categorical colours (solid, then dotted once the colours run out)."""
    n_mixed = kinds.count("mixed")
    oranges = plt.get_cmap("Oranges")(np.linspace(0.45, 0.95, max(n_mixed, 1)))
    others = [f"C{i}" for i in (2, 3, 4, 5, 6, 7, 8, 9)]  # C0 and C1 are ID and mixed
    styles, m, o = [], 0, 0
    for kind in kinds:
        if kind == "mixed":
            styles.append(dict(color=oranges[m], lw=1.2, ls="--"))
            m += 1
        else:
            styles.append(dict(color=others[o % len(others)], lw=1.0,
                               ls="-" if o < len(others) else ":"))
            o += 1
    return styles


def _several_seeds(df: pd.DataFrame) -> bool:
    return "seed" in df and df["seed"].nunique() > 1


def sweep_groups(df: pd.DataFrame, x: str, *, hue: str = "bn_mode", log_x: bool = False,
                 reference: str | None = None) -> Figure:
    """AUROC (MSP) against a swept setting, one panel per OOD group (near, far, noise), one
    line per value of ``hue`` (e.g. batch-norm mode): the mean over seeds, a band of one
    standard deviation, each seed a dot; dashed, in the line's colour, the rows whose
    ``variant`` is ``reference`` (the control), its mean over seeds."""
    import seaborn as sns

    groups = [g for g in GROUP_LABELS if f"mean_auroc_{g}" in df]
    swept = df[df[x].notna()].astype({x: float})
    spread = "sd" if _several_seeds(swept) else None
    hues = list(dict.fromkeys(df[hue].dropna()))
    palette = dict(zip(hues, sns.color_palette(n_colors=max(len(hues), 1))))
    fig, axes = plt.subplots(1, len(groups), figsize=(2.6 * len(groups) + 0.4, 2.9),
                             squeeze=False)
    for ax, group in zip(axes[0], groups):
        y = f"mean_auroc_{group}"
        sns.lineplot(swept, x=x, y=y, hue=hue, hue_order=hues, palette=palette, ax=ax,
                     errorbar=spread, marker="o", markersize=4, legend=ax is axes[0][0])
        if spread:
            sns.scatterplot(swept, x=x, y=y, hue=hue, hue_order=hues, palette=palette, ax=ax,
                            s=9, alpha=0.5, legend=False)
        if reference is not None:
            for value, rows in df[df["variant"] == reference].groupby(hue, sort=False):
                ax.axhline(rows[y].mean(), color=palette.get(value, "0.5"), ls="--", lw=0.8)
        if log_x:
            ax.set_xscale("log")
        ticks = sorted(swept[x].unique())
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.minorticks_off()
        ax.set_title(GROUP_LABELS[group], fontsize=9)
        ax.set_xlabel(x)
        ax.set_ylabel("mean AUROC (MSP)" if ax is axes[0][0] else "")
    if axes[0][0].get_legend() is not None:
        handles, labels = axes[0][0].get_legend_handles_labels()
        axes[0][0].get_legend().remove()
        if reference is not None:
            handles.append(plt.Line2D([], [], color="0.3", ls="--", lw=0.8))
            labels.append(f"{reference} (dashed)")
        fig.legend(handles, labels, fontsize=7, loc="upper center", ncol=len(labels),
                   frameon=False, title=hue.replace("_", " "), title_fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    return fig


def per_set_heatmap(df: pd.DataFrame, label_col: str = "variant") -> Figure:
    """AUROC (MSP) of each variant (rows, in the table's order) on each OOD set (columns),
    averaged over seeds: where a swept setting helps and on which sets."""
    import seaborn as sns

    sets = [c for c in df.columns if c.startswith("auroc[")]
    grid = df.groupby(label_col, sort=False)[sets].mean()
    grid.columns = [readers_label(c[len("auroc["):-1]) for c in sets]
    grid.index = [readers_label(v) for v in grid.index]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(sets), 0.9 + 0.32 * len(grid)))
    sns.heatmap(grid, ax=ax, annot=True, fmt=".3f", annot_kws={"fontsize": 6}, cmap="viridis",
                cbar_kws={"label": "AUROC (MSP)"})
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(labelsize=7)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


#: The book's figures as the page shows them: at most this wide (inches), saved at
#: EXPORT_DPI, shown at their own size or shrunk to PAGE_PX (CSS pixels, the text column of the
#: book's theme in a wide window), and their text at least BODY_PX there (the body font).
PAGE_WIDTH_IN, PAGE_PX, BODY_PX = 7.5, 700, 16


def min_font_pt(width_in: float) -> float:
    """The smallest text (points) that a figure this wide (inches) may carry so that it is as
    large as the body text where the page shows it: an image of ``width_in * EXPORT_DPI``
    pixels shown at ``min(that, PAGE_PX)`` CSS pixels draws a point as ``shown / (72 *
    width_in)`` CSS pixels."""
    shown = min(width_in * EXPORT_DPI, PAGE_PX)
    return BODY_PX * 72 * width_in / shown


def fit_to_page(fig: Figure) -> float:
    """Make a figure legible at the book's width: narrowed to PAGE_WIDTH_IN where it is wider
    (its height kept), every text (titles, labels, ticks, legends, annotations) raised to
    :func:`min_font_pt` of the width it is saved at (its tight box, legends outside the axes
    included), the layout made again; returns that size."""
    import matplotlib.text

    width, height = fig.get_size_inches()
    if width > PAGE_WIDTH_IN:
        fig.set_size_inches(PAGE_WIDTH_IN, height)
    saved = fig.get_size_inches()[0]
    for _ in range(4):  # the saved image is the tight box: long labels or a legend outside
        # the axes widen it, and larger text widens it again; a few passes settle it
        smallest = min_font_pt(saved)
        for ax in fig.axes:
            for axis in ("x", "y"):
                labels = getattr(ax, f"get_{axis}ticklabels")()
                if labels and labels[0].get_fontsize() < smallest:
                    ax.tick_params(axis=axis, labelsize=smallest)
        for text in fig.findobj(matplotlib.text.Text):
            if text.get_fontsize() < smallest:
                text.set_fontsize(smallest)
        if fig.get_layout_engine() is None or type(fig.get_layout_engine()).__name__ == \
                "TightLayoutEngine":
            with warnings.catch_warnings():  # a grid of images (a gallery) has no room to
                warnings.filterwarnings("ignore", "Tight layout not applied")  # give: as drawn
                fig.tight_layout()
        renderer = fig.canvas.get_renderer()
        saved = max(saved, fig.get_tightbbox(renderer).width)
    return smallest


def png_bytes(fig: Figure, dpi: int = EXPORT_DPI) -> bytes:
    """The figure as PNG, as the book's exports draw it (for a page that embeds it: the
    landing page's forest plot)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


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
    comparison, one row of panels per OOD group, one line per detector (those in ``newer``
    below a dashed rule, marked *), a point and its 95% interval, a line at zero; colours say
    whether the interval lies above zero, below it, or straddles it."""
    groups = [g for g in GROUP_LABELS if g in set(rows["group"])]
    comparisons = list(dict.fromkeys(rows["comparison"]))
    detectors = list(dict.fromkeys(rows["detector"]))
    fig, axes = plt.subplots(len(groups), len(comparisons), sharey=True, squeeze=False,
                             figsize=(7.5, 0.3 * len(detectors) * len(groups) + 1.4 * len(groups)))
    y = {d: i for i, d in enumerate(detectors)}
    labels = [f"{d} *" if d in newer else d for d in detectors]
    for r, group in enumerate(groups):
        for c, comparison in enumerate(comparisons):
            ax = axes[r, c]
            part = rows[(rows["group"] == group) & (rows["comparison"] == comparison)]
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
            ax.set_title(f"{GROUP_LABELS[group]}: {comparison}", fontsize=FOREST_FONT, loc="left")
            ax.tick_params(axis="x", labelsize=FOREST_FONT)
            ax.xaxis.set_major_locator(plt.MaxNLocator(4))
            ax.grid(axis="y", visible=False)
            if r == len(groups) - 1:
                ax.set_xlabel("difference in AUROC, 95% interval", fontsize=FOREST_FONT)
    fig.tight_layout()
    return fig


def _barh(labels: Sequence[str], values: Sequence[float], xlabel: str,
          colors: Sequence[str] | str = "C0", width: float = 6.0) -> tuple[Figure, plt.Axes]:
    """Horizontal bars, first label on top, small tick labels: the layout of every bar chart."""
    fig, ax = plt.subplots(figsize=(width, 0.32 * max(len(labels), 1) + 1.1))
    y = np.arange(len(labels))
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, list(labels), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.invert_yaxis()
    return fig, ax


def sweep_bars(df: pd.DataFrame, label_col: str = "variant") -> Figure:
    """Mean AUROC (MSP) per variant as horizontal bars, one panel per OOD group (near, far,
    noise; the mean over all sets where the rows have no groups), ID accuracy in the labels;
    with several seeds per variant, the bar is their mean, the error bar one standard
    deviation and each seed a dot."""
    panels = {f"mean_auroc_{g}": GROUP_LABELS[g] for g in GROUP_LABELS
              if f"mean_auroc_{g}" in df} or {"mean_auroc": "all OOD sets"}
    grouped = df.groupby(label_col, sort=False)
    mean = grouped[[*panels, "accuracy"]].mean()
    labels = list(mean.index)
    y = np.arange(len(labels))
    colors = ["C7" if v == "no fine-tuning" else "C3" if str(v).startswith("control") else "C0"
              for v in labels]
    fig, axes = plt.subplots(1, len(panels), sharey=True, squeeze=False,
                             figsize=(3.6 + 2.2 * len(panels), 0.32 * max(len(labels), 1) + 1.3))
    for ax, (column, title) in zip(axes[0], panels.items()):
        ax.barh(y, mean[column], color=colors)
        if _several_seeds(df):
            sd = grouped[column].std(ddof=1)
            spread = sd.notna().to_numpy()  # a single run (the model before) has no error bar
            ax.errorbar(mean[column][spread], y[spread], xerr=sd[spread], fmt="none",
                        ecolor="k", elinewidth=0.8, capsize=2)
            ax.scatter(df[column], df[label_col].map(dict(zip(labels, y))), s=5, color="k",
                       alpha=0.6, zorder=3)
        lo = max(0.0, float(df[column].min()) - 0.05)
        ax.set_xlim(lo, min(1.0, float(df[column].max()) + 0.02))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("mean AUROC (MSP)")
    axes[0][0].set_yticks(y, [f"{readers_label(v)}  (acc {a:.3f})"
                              for v, a in zip(labels, mean["accuracy"])], fontsize=7)
    axes[0][0].invert_yaxis()
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def seeds_strip(df: pd.DataFrame) -> Figure:
    """Mean AUROC of every seed, per model (points), with the mean and one standard deviation
    (seaborn's point plot, sd error bars)."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    sns.stripplot(df, x="model", y="mean_auroc", ax=ax, color="C0", size=5, jitter=0.05,
                  zorder=3)
    sns.pointplot(df, x="model", y="mean_auroc", ax=ax, errorbar="sd", color="C3",
                  linestyle="none", capsize=0.15, marker="D", markersize=5)
    ax.set_xlabel("")
    ax.set_ylabel("mean AUROC (MSP)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _message_figure(text: str) -> Figure:
    """A small figure that holds one line of text: what a page draws when it has no data."""
    fig, ax = plt.subplots(figsize=(5, 1.0))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def chapter_cost_bars(costs: pd.DataFrame) -> Figure:
    """Hours per chapter (one bar pair per chapter and device): the chapter alone, and its
    share of the whole run in the book's order (what no earlier chapter had computed)."""
    import seaborn as sns

    if costs.empty:
        return _message_figure("no chapter has recorded what it used yet: run the chapters first")
    several = costs["device"].nunique() > 1
    label = costs["chapter"] + (" (" + costs["device"] + ")" if several else "")
    long = costs.assign(label=label).melt(id_vars="label", value_vars=["hours alone",
                                                                      "hours in order"],
                                          var_name="measure", value_name="hours")
    fig, ax = plt.subplots(figsize=(6.0, 0.36 * len(costs) + 1.2))
    sns.barplot(long, y="label", x="hours", hue="measure", ax=ax, palette=["C7", "C0"])
    ax.set_ylabel("")
    ax.set_xlabel("hours of wall time" + ("" if several else f" ({costs['device'].iloc[0]})"))
    ax.tick_params(axis="y", labelsize=7)
    sns.move_legend(ax, "lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, title=None,
                    frameon=False, fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def runtime_bars(df: pd.DataFrame) -> Figure:
    """Wall time per stored step (training runs and detector fit / scoring); an empty store
    gives a figure that says so (a log axis has nothing to scale)."""
    if df.empty:
        return _message_figure("no stored computations yet: run the other chapters first")
    fig, ax = _barh([f"{w}: {readers_label(d)}" for w, d in zip(df["what"], df["detail"])],
                    df["seconds"], "seconds (log scale)")
    ax.set_xscale("log")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def quirk_effects(effects: pd.DataFrame) -> Figure:
    """The measured effect of each quirk of the authors' code (applied alone)."""
    df = effects.dropna(subset=["effect"])
    import textwrap

    labels = [textwrap.fill(f"{q}: {m}", 28) for q, m in zip(df["quirk"], df["measured on"])]
    fig, ax = _barh(labels, df["effect"], "change of the mean AUROC when the quirk is applied "
                    "alone", ["C3" if e < 0 else "C2" for e in df["effect"]], width=6.4)
    fig.set_size_inches(6.4, 0.75 * max(len(labels), 1) + 1.4)  # labels of up to three lines
    ax.axvline(0, color="0.3", lw=0.8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def paper_scatter(cells: pd.DataFrame) -> Figure:
    """Our AUROC against the paper's, one point per cell the paper reports."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    paired = cells[cells["paper_auroc"].notna() & (cells["ood"] != "average")]
    if paired.empty:
        ax.text(0.5, 0.5, "the paper reports no numbers\nfor this profile's data",
                ha="center", va="center", transform=ax.transAxes)
    for protocol, df in paired.groupby("protocol", sort=False):
        ax.scatter(df["paper_auroc"], df["auroc"], s=10, label=readers_label(protocol),
                   alpha=0.7)
    ax.plot([0.5, 1], [0.5, 1], color="0.5", lw=0.8, ls=":")
    ax.set_xlim(0.5, 1)
    ax.set_ylim(0.5, 1)
    ax.set_xlabel("paper AUROC")
    ax.set_ylabel("our AUROC")
    if not paired.empty:
        ax.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
