"""Presentation helpers for the notebooks: the paper's numbers, labelled tables and figures.

Every table and figure the book shows says which profile and parameters produced it: tables
carry it in their caption, figures in their caption and in a footer drawn into the image, so a
smoke-profile PNG copied into a report still says that it is one.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .store import canonical_json, config_key

def paper_numbers() -> pd.DataFrame:
    """Every number of the paper's Tables 1 and 2 (long format; see paper/SOURCE.md)."""
    with resources.files("mimlib.paper").joinpath("paper_tables.csv").open() as fh:
        return pd.read_csv(fh)


def compare_with_paper(ours: pd.DataFrame, id_data: str, table: str = "table1") -> pd.DataFrame:
    """Our (method, ood, auroc, aupr_out) rows beside the paper's, with the differences.

    ``ours`` needs the columns method, ood, auroc and aupr_out. Sets or methods that the paper
    does not report get empty paper cells, so a synthetic run is never matched to a paper number.
    """
    paper = paper_numbers()
    paper = paper[(paper.table == table) & (paper.id_dataset == id_data)]
    paper = paper.rename(columns={"method": "method", "ood_dataset": "ood", "auroc": "paper_auroc",
                                  "aupr": "paper_aupr"})[["method", "ood", "paper_auroc",
                                                          "paper_aupr"]]
    merged = ours.merge(paper, on=["method", "ood"], how="left")
    merged["diff_auroc"] = merged["auroc"] - merged["paper_auroc"]
    merged["diff_aupr"] = merged["aupr_out"] - merged["paper_aupr"]
    return merged


def with_average(rows: pd.DataFrame, by: str = "method") -> pd.DataFrame:
    """Append an ``average`` row per method: the unweighted mean over OOD sets, as the paper."""
    numeric = rows.select_dtypes("number").columns
    means = rows.groupby(by, sort=False)[list(numeric)].mean().reset_index()
    means["ood"] = "average"
    return pd.concat([rows, means], ignore_index=True)


def label(profile: str, **params: Any) -> str:
    """One line naming the profile and the parameters that produced a result."""
    shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
    tag = "SMOKE PROFILE (synthetic data, not comparable with the paper)" if profile == "smoke" \
        else f"profile {profile}"
    return f"{tag}; {shown}" if shown else tag


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"[{len(value)} items]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def markdown_table(df: pd.DataFrame, caption: str, name: str, provenance: str,
                   floatfmt: str = ".4f") -> str:
    """A numbered, captioned MyST ``{table}`` directive (render markdown outputs as MyST)."""
    header = "| " + " | ".join(str(c).replace("|", "\\|") for c in df.columns) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(_cell(v, floatfmt) for v in row) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([f"```{{table}} {caption} *({provenance})*", f":name: {name}", "",
                      header, rule, *body, "```"])


def _cell(value: Any, floatfmt: str) -> str:
    if value is pd.NA:
        return "—"
    if isinstance(value, (float, np.floating)):
        return "—" if np.isnan(value) else format(value, floatfmt)
    return str(value).replace("|", "\\|")


def figures_dir() -> Path:
    """Where notebooks save figure files: ``$MIMLIB_FIGURES`` or ``book/figures``."""
    return Path(os.environ.get("MIMLIB_FIGURES", "book/figures"))


def save_figure(fig: Any, name: str, provenance: str, profile: str) -> list[Path]:
    """Draw the provenance footer into the figure and save it as PNG and PDF.

    Files go to ``figures_dir()/<profile>/<name>.{png,pdf}``; returns their paths.
    """
    fig.text(0.01, 0.005, provenance, fontsize=6, color="0.35", ha="left", va="bottom",
             wrap=True)
    folder = figures_dir() / profile
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    for path in paths:
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        os.replace(tmp, path)  # a killed run never leaves half a figure file
    return paths


def result_id(params: dict[str, Any]) -> str:
    """A short id of a parameter set, printed beside results so that they can be traced."""
    return config_key("notebook", json.loads(canonical_json(params)))[:10]
