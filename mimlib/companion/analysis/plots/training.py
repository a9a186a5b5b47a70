"""The figures of the method's chapters: mixed images, pretraining and fine-tuning curves,
embeddings and MSP distributions."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from ..labels import readers_label


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
