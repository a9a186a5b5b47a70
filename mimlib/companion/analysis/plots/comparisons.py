"""The figures that compare: methods and detectors as bars, sweeps over a setting, per-set
heatmaps, seeds, costs, the quirks' effects and our numbers against the paper's."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...results.catalog import GROUP_LABELS
from ..labels import readers_label
from ..report import group_mean_name


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
