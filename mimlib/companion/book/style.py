"""One theme for every figure of the book."""

from __future__ import annotations


def plot_style() -> None:
    """One theme for every figure of the book: seaborn's, with the book's sizes on top."""
    import matplotlib
    import seaborn as sns  # here, not at the top: a page that draws nothing skips its second

    sns.set_theme(context="paper", style="whitegrid", palette="deep")
    matplotlib.rcParams.update({"figure.dpi": 110, "axes.spines.top": False,
                                "axes.spines.right": False, "axes.grid": True,
                                "grid.alpha": 0.3, "font.size": 9})
