"""What training in bf16 does to the numbers: the same run in fp32 and bf16, beside the seeds.

The precision decision of a profile rests on this measurement: one MIM run and its control
trained in bf16 and in fp32 (the same seed, everything else equal, scored in fp32), their
per-set AUROC and ID accuracy differences, a paired interval over the test images, and the
spread of the same numbers over fine-tuning seeds in fp32. A difference well inside the seed
spread changes no conclusion that the seeds allow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..results.catalog import GROUP_LABELS, display_name, groups_of
from ...device import bf16_native, planned_device
from ..results.experiment import Experiment
from ..results.store import RECORD
from .stats import auroc_difference


def _msp_scores(exp: Experiment, run: Any) -> dict[str, np.ndarray]:
    return {k[len("MSP/"):]: v for k, v in exp.evaluate(run, ("MSP",)).scores.items()
            if k.startswith("MSP/")}


def precision_unmeasurable(exp: Experiment, mim: dict[str, Any], seeds: Sequence[int],
                           precision: str = "bf16") -> str | None:
    """Why this machine cannot make the fp32 / ``precision`` comparison, as a sentence for the
    page (None when its runs are stored, or this machine computes them natively): the hardware
    is asked only for runs that would be computed."""
    base = exp.base_model()
    missing = [arm for arm, params in (("MIM", dict(mim)), ("control", {**mim, "lam": 0.0}))
               if not (exp.store.path("finetune", exp.mim_recipe(
                   base, **{**params, "seed": seeds[0], "precision": precision})) / RECORD
               ).is_file()]
    device = planned_device(exp.setup.device)
    if not missing or bf16_native(device):
        return None
    return (f"Not measurable on this machine: the {precision} runs of the comparison "
            f"({' and '.join(missing)}, seed {seeds[0]}) are not in the store, and this "
            f"{device.type.upper()} has no native {precision} (AVX-512 BF16 / AMX on a CPU, "
            "or a GPU), where emulation would be slower than fp32: compute them on a CPU with "
            "AVX-512 BF16 or AMX, or on a GPU.")


def precision_effect(exp: Experiment, mim: dict[str, Any], seeds: Sequence[int],
                     precision: str = "bf16") -> pd.DataFrame:
    """Per arm (MIM, control) and measure (each OOD set's AUROC, each group's mean, ID
    accuracy): fp32 and ``precision`` at the first seed, their difference with a 95% interval
    over the test images (AUROC), and the standard deviation over ``seeds`` in fp32."""
    base = exp.base_model()
    rows = []
    for arm, params in (("MIM", dict(mim)), ("control", {**mim, "lam": 0.0})):
        runs = {seed: exp.mim_model(base, **{**params, "seed": seed}) for seed in seeds}
        fp32 = runs[seeds[0]]
        other = exp.mim_model(base, **{**params, "seed": seeds[0], "precision": precision})
        evals = {name: exp.evaluate(run, ("MSP",)) for name, run in
                 (("fp32", fp32), (precision, other))}
        per_seed = [exp.evaluate(run, ("MSP",)) for run in runs.values()]
        sets = [r["ood"] for r in evals["fp32"].rows]
        measures = [(display_name(s), [s]) for s in sets] + [
            (f"mean, {GROUP_LABELS[g]}", members) for g, members in groups_of(sets).items()]
        scores = {name: _msp_scores(exp, run) for name, run in (("fp32", fp32),
                                                                 (precision, other))}
        for label, members in measures:
            value = {name: _mean_auroc(ev.rows, members) for name, ev in evals.items()}
            diff = auroc_difference([scores[precision]], [scores["fp32"]], members)
            rows.append({"arm": arm, "measure": f"AUROC, {label}", "fp32": value["fp32"],
                         precision: value[precision], "difference": diff.estimate,
                         "95% interval (images)": f"[{diff.low:+.4f}, {diff.high:+.4f}]",
                         "seed sd (fp32)": float(np.std([_mean_auroc(ev.rows, members)
                                                         for ev in per_seed], ddof=1))
                         if len(per_seed) > 1 else float("nan")})
        rows.append({"arm": arm, "measure": "ID accuracy", "fp32": evals["fp32"].accuracy,
                     precision: evals[precision].accuracy,
                     "difference": evals[precision].accuracy - evals["fp32"].accuracy,
                     "95% interval (images)": "",
                     "seed sd (fp32)": float(np.std([ev.accuracy for ev in per_seed], ddof=1))
                     if len(per_seed) > 1 else float("nan")})
    return pd.DataFrame(rows)


def precision_verdict(effect: pd.DataFrame, precision: str = "bf16") -> str:
    """One sentence: the largest differences, and the largest one relative to the seed spread
    (each named by its arm and group, since the two need not be the same)."""
    groups = effect[effect.measure.str.startswith("AUROC, mean")]
    ratios = groups["difference"].abs() / groups["seed sd (fp32)"]
    accuracy = effect[effect.measure == "ID accuracy"]
    worst = groups.loc[groups["difference"].abs().idxmax()]
    relative = groups.loc[ratios.idxmax()]

    def where(row: pd.Series) -> str:
        return f"{row['arm']}, {row['measure'][len('AUROC, mean, '):]}"

    return (f"Training in {precision} instead of fp32 moves a group's mean AUROC by at most "
            f"{abs(worst['difference']):.4f} ({where(worst)}); relative to the spread over "
            f"fine-tuning seeds in fp32, the largest move is {ratios.max():.2f} times it "
            f"({where(relative)}). ID accuracy moves by at most "
            f"{accuracy['difference'].abs().max():.4f} (seed spread "
            f"{accuracy['seed sd (fp32)'].max():.4f}).")


def _mean_auroc(rows: list[dict[str, Any]], sets: Sequence[str]) -> float:
    return float(np.mean([r["auroc"] for r in rows if r["ood"] in sets]))


def cross_machine(path: str | Path) -> pd.DataFrame:
    """The committed re-derivation on other CPU kinds and thread counts
    (``mimlib rederive --machines``): per machine played and kind of step,
    the largest difference from the committed numbers; one row saying so where it was not
    measured."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame([{"machine played": "not measured for this profile",
                              "step": "run: mimlib rederive --machines"}])
    data = json.loads(path.read_text())
    rows = []
    for name, run in data["machines"].items():
        machine = run["machine"]
        for step, largest in run["largest"].items():
            rows.append({"machine played": name, "kernels": machine["capability"],
                         "native bf16": "yes" if machine["bf16_native"] else "no",
                         "threads": machine["threads"], "step": step,
                         **{f"largest |Δ| {kind}": largest.get(kind, np.nan)
                            for kind in ("AUROC", "FPR95", "ID accuracy", "loss")},
                         "tolerance": data["tolerances"][step]})
    return pd.DataFrame(rows)


def cross_machine_sentence(path: str | Path) -> str:
    """What the re-derivation shows, per kind of step: the largest AUROC and accuracy
    differences over the machines played."""
    if not Path(path).is_file():
        return ("This profile's numbers have not been re-derived on other machines "
                "(`mimlib rederive --machines` measures it).")
    table = cross_machine(path)
    parts = []
    for step, rows in table.groupby("step", sort=False):
        auroc, accuracy = rows["largest |Δ| AUROC"].max(), rows["largest |Δ| ID accuracy"].max()
        parts.append(f"{step} ({len(rows)} machine{'s' * (len(rows) > 1)}): AUROC {auroc:.2g}, "
                     f"ID accuracy {accuracy:.2g}")
    made_on = json.loads(Path(path).read_text())["made_on"]["cpu"]
    return (f"Re-derived from the data on other CPU kinds and thread counts, played on {made_on} "
            "with torch's and oneDNN's own switches, the committed numbers differ at most by: "
            + "; ".join(parts) + ".")


def cross_machine_provenance(path: str | Path) -> str | None:
    """What produced the cross-machine table (a committed JSON, not this page's profile);
    None where there is none (the page's own provenance then labels the table)."""
    if not Path(path).is_file():
        return None
    data = json.loads(Path(path).read_text())
    git = (data["environment"].get("git") or "?")[:8]
    return (f"mimlib rederive --machines on {data['made_on']['cpu']} (torch "
            f"{data['made_on']['torch']}, git {git}), profile {data['profile']}")
