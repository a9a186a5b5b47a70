"""Presentation helpers for the notebooks: the paper's numbers, labelled tables and figures.

Every table and figure the book shows says what it shows in readers' words in its caption
(data, model, protocol, profile); the spec tuple that produced it (data specs with their pins,
parameters, result id) is in the CSV's first line, the figure files' metadata and each page's
provenance table. A smoke-profile figure also carries a footer drawn into the image, so a PNG
copied into a report still says that it is one.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..results.catalog import GROUP_LABELS, groups_of
from ..results.store import canonical_json, config_key

EXPORT_DPI = 150  # the figures' PNG and PDF resolution (the book shows the PNG)

def paper_numbers() -> pd.DataFrame:
    """Every number of the paper's Tables 1 and 2 (long format; see paper/SOURCE.md)."""
    with resources.files("mimlib.companion.analysis.paper").joinpath("paper_tables.csv").open() as fh:
        return pd.read_csv(fh)


def openood_leaderboard() -> pd.DataFrame:
    """The OpenOOD v1.5 CIFAR-10 leaderboard rows the book quotes (near / far AUROC in percent,
    ResNet-18; see paper/SOURCE.md)."""
    with resources.files("mimlib.companion.analysis.paper").joinpath("openood_v15_cifar10.csv").open() as fh:
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
    # the paper's average is over its own OOD sets: beside an average over other sets it
    # would compare different things, so it is shown only when the sets are the same
    paper_sets = set(paper["ood"]) - {"average"}
    if {o for o in ours["ood"] if not is_mean_row(o)} != paper_sets:
        merged.loc[merged["ood"] == "average", ["paper_auroc", "paper_aupr"]] = np.nan
    merged["diff_auroc"] = merged["auroc"] - merged["paper_auroc"]
    merged["diff_aupr"] = merged["aupr_out"] - merged["paper_aupr"]
    return merged


def group_mean_name(group: str) -> str:
    """The ``ood`` name of a group's mean row: ``mean near-OOD``, ``mean far-OOD``, ``mean
    noise (OE paper)``."""
    return f"mean {GROUP_LABELS[group]}"


def with_average(rows: pd.DataFrame, by: str = "method") -> pd.DataFrame:
    """Append the means per method, unweighted over OOD sets: one per group of sets as the
    field reports them (:func:`group_mean_name`: near-OOD, far-OOD, and the noise sets apart),
    and ``average``, over the natural sets (near and far; noise is never averaged with natural
    images), the paper's average where the sets are the paper's (:func:`compare_with_paper`
    puts the paper's beside it only then)."""
    numeric = list(rows.select_dtypes("number").columns)
    groups = groups_of(list(dict.fromkeys(rows["ood"])))
    parts = [rows]
    for name, sets in [*((group_mean_name(g), sets) for g, sets in groups.items()),
                       ("average", [*groups.get("near", []), *groups.get("far", [])])]:
        if sets:
            means = rows[rows["ood"].isin(sets)].groupby(by, sort=False)[numeric].mean()
            parts.append(means.reset_index().assign(ood=name))
    return pd.concat(parts, ignore_index=True)


def is_mean_row(ood: str) -> bool:
    """Whether an ``ood`` name is a mean over sets (a group's or the average), not a set."""
    return ood == "average" or ood in {group_mean_name(g) for g in GROUP_LABELS}


def label(profile: str, **params: Any) -> str:
    """One line naming the profile and the parameters that produced a result."""
    shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
    tag = "SMOKE PROFILE (synthetic data, not comparable with the paper)" if profile == "smoke" \
        else f"profile {profile}"
    return f"{tag}; {shown}" if shown else tag


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"[{len(value)} items]" if len(value) > 4 else \
            "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def markdown_table(df: pd.DataFrame, caption: str, name: str, provenance: str,
                   floatfmt: str = ".4f", link: str = "", cite: str = "",
                   rerun: str = "") -> str:
    """A numbered, captioned MyST ``{table}`` directive (render markdown outputs as MyST);
    ``link`` (MyST inline markup, e.g. a download role) ends the caption, ``cite`` (a "cite
    as" line) and ``rerun`` (the command that re-runs the page) follow the table."""
    header = "| " + " | ".join(str(c).replace("|", "\\|") for c in df.columns) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(_cell(v, floatfmt) for v in row) + " |"
            for row in df.itertuples(index=False)]
    title = f"{caption} *({provenance})*" + (f" {link}" if link else "")
    # a tilde fence: a backtick fence may not hold the backticks of a role in its title
    lines = [f"~~~{{table}} {title}", f":name: {name}", "", header, rule, *body, "~~~"]
    return "\n".join(lines + [line for text in (cite, rerun) if text
                              for line in ("", f"<small>{text}</small>")])


def cite_line(label: str, page: str, profile: str, git: str) -> str:
    """The one line a report pastes to cite a figure or table: its number (a MyST ``numref``,
    numbered by the book), its stable label, page, profile and git revision."""
    return (f"Cite as: mimlib book, {{numref}}`{label}` (label `{label}`), page {page}, "
            f"profile {profile}, git {git}")


def _cell(value: Any, floatfmt: str) -> str:
    if value is pd.NA:
        return "—"
    if isinstance(value, (float, np.floating)):
        return "—" if np.isnan(value) else format(value, floatfmt)
    return str(value).replace("|", "\\|")


def exports_dir() -> Path:
    """Where notebooks save the files readers cite: ``$MIMLIB_EXPORTS`` or ``book/exports``."""
    return Path(os.environ.get("MIMLIB_EXPORTS", "book/exports"))


def save_figure(fig: Any, name: str, provenance: str, profile: str,
                min_font_pt: float | None = None) -> list[Path]:
    """Save the figure as PNG and PDF, the provenance (the spec tuple) in each file's metadata;
    a smoke-profile figure also says so in a footer drawn into it, so that a copy pasted into
    a report still says it is not comparable with the paper. The caption, not the image, says
    what a figure of a real profile shows.

    Files go to ``exports_dir()/<profile>/<name>.{png,pdf}``; returns their paths.
    """
    if profile == "smoke":
        fig.text(0.01, 0.005, "SMOKE PROFILE (synthetic data, not comparable with the paper)",
                 fontsize=10, color="0.35", ha="left", va="bottom")
    paths = [_export_path(profile, f"{name}.png"), _export_path(profile, f"{name}.pdf")]
    metadata = {".png": {"Description": provenance,
                         **({"MinFontPt": f"{min_font_pt:.2f}"} if min_font_pt else {})},
                ".pdf": {"Subject": provenance}}
    for path in paths:
        _write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=EXPORT_DPI, bbox_inches="tight",
                                                        metadata=metadata[path.suffix]))
    return paths


def save_table(df: pd.DataFrame, name: str, provenance: str, profile: str) -> Path:
    """Save a table as ``exports_dir()/<profile>/<name>.csv``, full precision, its first line
    a ``#`` comment with the provenance (read it with ``pd.read_csv(path, skiprows=1)``)."""
    path = _export_path(profile, f"{name}.csv")

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            fh.write(f"# {provenance}\n")
            df.to_csv(fh, index=False)

    _write_atomically(path, write)
    return path


def _export_path(profile: str, filename: str) -> Path:
    """The file's place under ``exports_dir()``, which links name. While a run is staged
    (``$MIMLIB_EXPORTS_STAGING``, set by :func:`mimlib.companion.run.papermill_run.execute_notebook`), the
    file is written there instead and moved to its place only if the whole notebook succeeds."""
    return exports_dir() / profile / filename


def written_path(path: Path) -> Path:
    """Where this run wrote an export whose place is ``path`` (its staging copy while a run is
    staged, see :func:`_export_path`)."""
    staging = os.environ.get("MIMLIB_EXPORTS_STAGING")
    return Path(staging) / path.relative_to(exports_dir()) if staging else path


def _write_target(path: Path) -> Path:
    target = written_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    path = _write_target(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)  # a killed run never leaves half a file


def result_id(params: dict[str, Any]) -> str:
    """A short id of a parameter set, printed beside results so that they can be traced."""
    return config_key("notebook", json.loads(canonical_json(params)))[:10]
