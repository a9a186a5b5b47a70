"""MIM with other detectors (a question beyond the paper): does MIM's fine-tuning help every
post-hoc detector, not only MSP, and how does MIM + MSP stand against the newer detectors?

MIM changes the classifier, so any detector can score the fine-tuned model. For each protocol
and detector, the starting model, the MIM models and their controls (the same fine-tuning
without mixed images, lambda = 0) are scored on the same images, under the same fine-tuning
seeds, and four paired differences are bootstrapped over seeds and test images as the claims
are (:mod:`.stats`), per OOD group: the detector on the MIM model minus on the starting model,
minus on the control, minus MSP on the MIM model, and MIM + MSP minus the detector on the
starting model. The near- and far-OOD groups get intervals; the noise sets are shown as means.

Table 1's detectors on the starting model are read as Table 1 stores them (float32); the
entries this chapter adds keep one byte per image (:mod:`..score_codes`), which keeps the
committed store under its budget.
"""

from __future__ import annotations

from html import escape
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ...detectors import TABLE1_DETECTORS, check_detectors
from ..results.catalog import GROUP_LABELS, groups_of
from ..results.experiment import Experiment
from ..results.runs import ModelRun
from ..results.store import Entry
from ..results.protocol import check_protocol
from .report import openood_leaderboard
from ..results.score_codes import FLOAT32, QUANTILE8
from .claims import JUDGED_GROUPS, NOT_RESOLVED
from .stats import Interval, stored_auroc_difference
from .tables import replace_setup

#: The paired differences, in the order the table and the figure show them: (key, words).
COMPARISONS = (
    ("vs_start", "on MIM − on the starting model"),
    ("vs_control", "on MIM − on the control"),
    ("vs_msp", "on MIM − MSP on MIM"),
    ("msp_vs", "MIM (MSP) − on the starting model"),
)
#: The two differences the figure draws (the question: does MIM help this detector?).
DRAWN = ("vs_start", "vs_control")
BETTER, WORSE = "higher", "lower"


def stored_as(detector: str, starting_model: bool) -> str:
    """How this chapter stores a detector's scores: float32 where Table 1 stores them (its
    detectors on the starting model, whose weights are committed), else as codes. MSP on a
    fine-tuned model is coded too: it then scores the same weights as the other detectors,
    which may be trained again on another machine than the stored MSP entry's."""
    return FLOAT32 if starting_model and detector in TABLE1_DETECTORS else QUANTILE8


def reading(interval: Interval) -> str:
    """higher / lower where the interval lies above / below zero, else not resolved."""
    return {1: BETTER, -1: WORSE, 0: NOT_RESOLVED}[interval.side()]


def _entry(exp: Experiment, run: ModelRun, detector: str, start: bool) -> Entry:
    return exp.scores_entry(run, detector, stored_as(detector, start))


def _entries(exp: Experiment, base: ModelRun, mim_runs: Sequence[ModelRun],
             control_runs: Sequence[ModelRun], detector: str) -> dict[str, list[Entry]]:
    """One detector's score entries per arm: the starting model (one, the same under every
    seed), the MIM models and their controls (one per seed, in the same order)."""
    return {"start": [_entry(exp, base, detector, True)],
            "mim": [_entry(exp, r, detector, False) for r in mim_runs],
            "control": [_entry(exp, r, detector, False) for r in control_runs]}


def _mean_auroc(entries: Sequence[Entry], sets: Sequence[str]) -> float:
    """Mean over runs and sets of the stored AUROC (computed from the float64 scores)."""
    return float(np.mean([row["auroc"] for e in entries for row in e.record["result"]["rows"]
                          if row["ood"] in sets]))


def _code_error(entry: Entry) -> float:
    """How far the entry's coded scores' AUROC is from the float one (0 for float32)."""
    return float(entry.record["result"].get("stored_as", {}).get("max_auroc_error", 0.0))


def compare_detectors(template: Experiment, mim: dict[str, Any], *, detectors: Sequence[str],
                    protocols: Sequence[str], seeds: Sequence[int]) -> pd.DataFrame:
    """One row per protocol, detector and OOD group: the mean AUROC on the starting model, the
    MIM models and the controls (means over seeds and the group's sets), and for the near and
    far groups the four paired differences of :data:`COMPARISONS` with 95% intervals and their
    reading (higher, lower, not resolved). ``attrs["code_error"]`` is the largest AUROC
    difference between any coded entry and the float scores it codes; ``attrs["retrain_drift"]``
    the largest MSP AUROC difference between the fine-tuned weights scored here and the stored
    MSP entries' (weights not committed are trained again, maybe on other CPU kernels)."""
    detectors = check_detectors(detectors)
    if "MSP" not in detectors:
        raise ValueError("the detectors must include MSP: MIM is MSP on the fine-tuned model")
    rows, code_errors, drift = [], [0.0], [0.0]
    for protocol in protocols:
        exp = template.derive(replace_setup(template.setup, protocol=check_protocol(protocol)))
        base = exp.base_model()
        mim_runs = [exp.mim_model(base, **{**mim, "seed": s}) for s in seeds]
        control_runs = [exp.mim_model(base, **{**mim, "seed": s, "lam": 0.0}) for s in seeds]
        groups = groups_of([row["ood"] for row in exp.evaluate(base, ("MSP",)).rows])
        msp_entries = _entries(exp, base, mim_runs, control_runs, "MSP")
        msp = [e.arrays() for e in msp_entries["mim"]]
        drift += [_drift(coded, exp.scores_entry(run, "MSP")) for coded, run in
                  zip(msp_entries["mim"] + msp_entries["control"], [*mim_runs, *control_runs])]
        for detector in detectors:
            entries = _entries(exp, base, mim_runs, control_runs, detector)
            arms = {arm: [e.arrays() for e in es] for arm, es in entries.items()}
            code_errors += [_code_error(e) for es in entries.values() for e in es]
            for group, sets in groups.items():
                row: dict[str, Any] = {"protocol": protocol, "detector": detector,
                                       "group": group, "seeds": len(seeds),
                                       **{arm: _mean_auroc(es, sets)
                                          for arm, es in entries.items()}}
                if group in JUDGED_GROUPS:
                    pairs = {"vs_start": (arms["mim"], arms["start"]),
                             "vs_control": (arms["mim"], arms["control"]),
                             "vs_msp": (arms["mim"], msp), "msp_vs": (msp, arms["start"])}
                    for key, (a, b) in pairs.items():
                        if detector == "MSP" and key in ("vs_msp", "msp_vs"):
                            continue  # MSP against itself is zero, or the claims' own row
                        interval = stored_auroc_difference(exp, a, b, sets)
                        row.update({key: interval.estimate, f"{key}_low": interval.low,
                                    f"{key}_high": interval.high, f"{key}_reading":
                                    reading(interval)})
                rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["code_error"] = max(code_errors)
    frame.attrs["retrain_drift"] = max(drift)
    return frame


def _drift(coded: Entry, stored: Entry) -> float:
    """The largest MSP AUROC difference, over the sets, between the weights this chapter
    scored and those of the stored MSP entry (0 where they are the same weights; not where
    they were trained again on a CPU with other kernels)."""
    stored_rows = {r["ood"]: r["auroc"] for r in stored.record["result"]["rows"]}
    return max(abs(r["auroc"] - stored_rows[r["ood"]]) for r in coded.record["result"]["rows"])


def forest_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The figure's rows, every protocol run, in the form
    :func:`~mimlib.companion.analysis.plots.detector_forest` draws: protocol, detector,
    comparison (words), group, estimate, low, high, reading."""
    part = frame[frame["group"].isin(JUDGED_GROUPS)]
    words = dict(COMPARISONS)
    rows = [{"protocol": r["protocol"], "detector": r["detector"], "comparison": words[key],
             "group": r["group"], "estimate": r[key], "low": r[f"{key}_low"],
             "high": r[f"{key}_high"], "reading": r[f"{key}_reading"]}
            for _, r in part.iterrows() for key in DRAWN]
    return pd.DataFrame(rows)


def difference_table(frame: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The table for one protocol: per detector and group (near, far), the three mean AUROCs
    and each difference as 'estimate [low, high]'; the noise sets' means below their own
    header."""
    part = frame[frame["protocol"] == protocol]
    out = []
    for _, r in part.iterrows():
        row = {"detector": r["detector"], "OOD group": GROUP_LABELS[r["group"]],
               "starting model": r["start"], "MIM": r["mim"], "control": r["control"]}
        for key, words in COMPARISONS:
            value = r.get(key)
            row[words] = ("" if value is None or pd.isna(value) else
                          f"{value:+.4f} [{r[f'{key}_low']:+.4f}, {r[f'{key}_high']:+.4f}]")
        out.append(row)
    return pd.DataFrame(out)


def verdict_sentence(frame: pd.DataFrame, protocol: str) -> str:
    """What the intervals say, in one paragraph: for how many detectors MIM's fine-tuning
    raises the AUROC over the starting model and over the control, per group, whether any
    detector beats MSP on the MIM model, and how many detectors MIM + MSP beats."""
    part = frame[(frame["protocol"] == protocol) & frame["group"].isin(JUDGED_GROUPS)]
    n = part["detector"].nunique()
    parts = []
    for group, g in part.groupby("group", sort=False):
        counts = {key: g[f"{key}_reading"].value_counts() for key, _ in COMPARISONS}

        def tally(key: str, of: int) -> str:
            c = counts[key]
            return (f"higher for {c.get(BETTER, 0)}, lower for {c.get(WORSE, 0)}, not resolved "
                    f"for {c.get(NOT_RESOLVED, 0)} of {of}")
        others = n - 1
        beats_msp = g[g["vs_msp_reading"] == BETTER]["detector"].tolist()
        best = g.loc[g["mim"].idxmax()]
        parts.append(
            f"{GROUP_LABELS[group]}: a detector on the MIM model minus the same detector on "
            f"the starting model is {tally('vs_start', n)} detectors, and minus it on the "
            f"control {tally('vs_control', n)}; on the MIM model, "
            + (f"{', '.join(beats_msp)} beat{'s' if len(beats_msp) == 1 else ''} MSP"
               if beats_msp else "no detector beats MSP by a resolved margin")
            + f" (highest mean AUROC: {best['detector']}, {best['mim']:.4f}); MIM + MSP minus "
            f"the other detectors on the starting model is {tally('msp_vs', others)}")
    seeds = int(part["seeds"].iloc[0]) if len(part) else 0
    return (f"{protocol.capitalize()} protocol, {seeds} fine-tuning seeds, 95% intervals: "
            + "; ".join(parts) + ".")


def verdict_html(frame: pd.DataFrame, protocols: Sequence[str], link: str | None = None) -> str:
    """The verdict of every protocol as HTML paragraphs; with ``link``, a last one pointing to
    the chapter (the claims page pastes that form, as a question beyond the paper)."""
    items = "".join(f"<p>{escape(verdict_sentence(frame, p))}</p>" for p in protocols)
    more = (f'<p>Every detector, figure and interval: <a href="{escape(link)}">MIM with other '
            "detectors</a>.</p>") if link else ""
    return f'<div class="mimlib-beyond">{items}{more}</div>'


def beside_leaderboard(frame: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The OpenOOD v1.5 CIFAR-10 leaderboard's near / far AUROC (ResNet-18, its sets) beside
    this chapter's means for the same detector on the starting model and on the MIM model
    (this book's model and sets: a different benchmark, shown for orientation, not compared),
    and a MIM row, which the leaderboard lacks."""
    ours = frame[frame["protocol"] == protocol].set_index(["detector", "group"])
    board = openood_leaderboard().set_index("method")

    def mean(detector: str, group: str, arm: str) -> float:
        return float(ours.loc[(detector, group), arm]) if (detector, group) in ours.index \
            else float("nan")

    rows = []
    for method in [*board.index, "MIM (MSP)"]:
        detector = "MSP" if method == "MIM (MSP)" else method
        row = {"detector": method,
               "OpenOOD near": board.loc[method, "near_auroc"] / 100 if method in board.index
               else float("nan"),
               "OpenOOD far": board.loc[method, "far_auroc"] / 100 if method in board.index
               else float("nan")}
        for group in JUDGED_GROUPS:
            row[f"here, starting model, {group}"] = (float("nan") if method == "MIM (MSP)"
                                                     else mean(detector, group, "start"))
            row[f"here, MIM model, {group}"] = mean(detector, group, "mim")
        rows.append(row)
    return pd.DataFrame(rows)
