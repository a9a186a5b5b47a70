"""The paper's claims, each tested on the stored runs of the chapters, with a verdict.

Each function reads (or computes) the runs of one chapter with the same parameters and returns
one row: the claim, the set-up it was tested under, the evidence in numbers, and a verdict
(``holds``, ``partly``, ``does not hold``) decided by a rule stated in the row, never by hand.
Differences smaller than the noise (twice the spread over seeds, at least ``MIN_MARGIN``) count
as ties.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..data import NOISE_SETS
from ..device import resolve_device
from ..experiment import Experiment
from .tables import CONTROL, replace_setup, summary_row, sweep, sweep_spread, table1

HOLDS, PARTLY, FAILS = "holds", "partly", "does not hold"
MIN_MARGIN = 0.002  # AUROC: below this, two runs are not told apart
#: The claims are about the paper's kind of OOD data, natural images: where the OE paper's
#: noise sets are among the OOD sets, verdicts use the mean over the others (both are shown).
NATURAL = "mean_auroc_natural"


def _metric(columns: Any) -> str:
    return NATURAL if NATURAL in columns else "mean_auroc"


def noise_margin(exp: Experiment, mim: dict[str, Any], seeds: Sequence[int]) -> float:
    """Twice the standard deviation of MIM's mean AUROC over seeds (at least MIN_MARGIN)."""
    base = exp.base_model()
    rows = [summary_row(exp, exp.mim_model(base, **{**mim, "seed": seed})) for seed in seeds]
    values = [row[_metric(row)] for row in rows]
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return max(MIN_MARGIN, 2 * spread)


def beats_baselines(template: Experiment, mim: dict[str, Any], detectors: Sequence[str],
                    protocols: Sequence[str], margin: float) -> dict[str, Any]:
    """MIM's mean AUROC against the best post-hoc detector on the same starting model, and
    against the control (the same fine-tuning without mixed images), per protocol."""
    parts, wins, over_control = [], 0, 0
    for protocol in protocols:
        exp = template.derive(replace_setup(template.setup, protocol=protocol))
        base = exp.base_model()
        rows = table1(exp, base, exp.mim_model(base, **mim), detectors,
                      control=exp.mim_model(base, **{**mim, "lam": 0.0}))
        natural = rows[~rows["ood"].isin(NOISE_SETS)]
        means = (natural if len(natural) < len(rows) and len(natural) else rows).groupby(
            "method", sort=False)["auroc"].mean()
        everything = rows.groupby("method", sort=False)["auroc"].mean()
        baselines = means[[d for d in detectors if d in means]]
        best = baselines.idxmax()
        wins += means["MIM"] > baselines.max() + margin
        over_control += means["MIM"] > means[CONTROL] + margin
        parts.append(f"{protocol}: MIM {means['MIM']:.4f}, best baseline {best} "
                     f"{baselines.max():.4f}, MSP {means['MSP']:.4f}, control "
                     f"{means[CONTROL]:.4f} (all sets: MIM {everything['MIM']:.4f}, MSP "
                     f"{everything['MSP']:.4f})")
        sets = sorted(set(natural["ood"])) if len(natural) < len(rows) else sorted(set(rows["ood"]))
    verdict = HOLDS if wins == len(protocols) else PARTLY if wins else FAILS
    return {"claim": "MIM beats every post-hoc baseline on mean AUROC",
            "evidence": "; ".join(parts) + f" (mean AUROC over {', '.join(sets)})",
            "rule": f"holds if MIM exceeds the best of {len(detectors)} detectors by more than "
                    f"{margin:.4f} in every protocol; partly if in some",
            "verdict": verdict,
            "note": f"MIM above its control in {over_control} of {len(protocols)} protocols"}


def accuracy_kept(template: Experiment, mim: dict[str, Any], protocols: Sequence[str],
                  tolerance: float = 0.01) -> dict[str, Any]:
    """ID test accuracy before and after MIM (and after the control), per protocol."""
    parts, drops = [], []
    for protocol in protocols:
        exp = template.derive(replace_setup(template.setup, protocol=protocol))
        base = exp.base_model()
        before = summary_row(exp, base)["accuracy"]
        after = summary_row(exp, exp.mim_model(base, **mim))["accuracy"]
        control = summary_row(exp, exp.mim_model(base, **{**mim, "lam": 0.0}))["accuracy"]
        drops.append(before - after)
        parts.append(f"{protocol}: before {before:.4f}, after MIM {after:.4f} "
                     f"({after - before:+.4f}), after the control {control:.4f}")
    drop = max(drops)
    verdict = HOLDS if drop <= tolerance else PARTLY if drop <= 2 * tolerance else FAILS
    return {"claim": "ID accuracy is kept", "evidence": "; ".join(parts),
            "rule": f"holds if accuracy falls by at most {tolerance:.2f} in every protocol; "
                    f"partly up to {2 * tolerance:.2f}", "verdict": verdict, "note": ""}


def one_epoch_enough(exp: Experiment, mim: dict[str, Any], eval_every: int,
                     margin: float) -> dict[str, Any]:
    """The AUROC curve during the one epoch: still rising at the end, flat, or past its peak."""
    run = exp.mim_model(exp.base_model(), eval_every=eval_every, **mim)
    curve = pd.DataFrame(run.evals)
    start, final = curve["mean_auroc"].iloc[0], curve["mean_auroc"].iloc[-1]
    peak = curve.loc[curve["mean_auroc"].idxmax()]
    late_row = curve[curve["step"] <= 0.7 * curve["step"].max()].iloc[-1]
    late = late_row["mean_auroc"]
    if peak["step"] == curve["step"].iloc[0] and start - final > margin:
        verdict, why = FAILS, "no step improves on the starting model: fine-tuning only lowers it"
    elif final - late > margin:
        verdict, why = FAILS, "still rising over the last 30% of the epoch"
    elif peak["mean_auroc"] - final > margin:
        verdict, why = PARTLY, "less than an epoch is better: the curve peaks, then falls"
    else:
        verdict, why = HOLDS, "flat at the end of the epoch"
    return {"claim": "One epoch of fine-tuning is enough",
            "evidence": f"mean AUROC over all OOD sets (the curve, on "
                        f"{exp.setup.curve_limit or 'all'} images per set) "
                        f"{start:.4f} at step 0, peak {peak['mean_auroc']:.4f} at step "
                        f"{int(peak['step'])}, {late:.4f} at step {int(late_row['step'])}, "
                        f"{final:.4f} at the end (step {int(curve['step'].iloc[-1])}); {why}",
            "rule": f"holds if the last 30% add at most {margin:.4f} and the end is within "
                    f"{margin:.4f} of the peak; does not hold if no step beats the start",
            "verdict": verdict, "note": ""}


def _runs_note(mim: dict[str, Any], seeds: Sequence[int]) -> str:
    """' (130 steps per run, the mean of 3 seeds)', or what of it applies."""
    parts = ([f"{mim['steps']} steps per run"] if mim.get("steps") else []) + (
        [f"the mean of {len(seeds)} seeds"] if len(seeds) > 1 else [])
    return f" ({', '.join(parts)})" if parts else ""


def k_above_five(exp: Experiment, mim: dict[str, Any], ks: Sequence[int],
                 margin: float, seeds: Sequence[int] = (0,)) -> dict[str, Any]:
    """The k ablation: the best k above 5 against the best k of at most 5 (each k's mean
    over the fine-tuning seeds)."""
    runs = sweep(exp, exp.base_model(), mim, [{"k": k} for k in ks], include_base=False,
                 seeds=seeds)
    col = _metric(runs.columns)
    df = sweep_spread(runs, (col,))  # one row per variant: the mean over seeds
    small, large = df[df.k <= 5], df[df.k > 5]
    if small.empty or large.empty:
        return {"claim": "k > 5 is needed", "evidence": f"ks {list(ks)} do not straddle 5",
                "rule": "", "verdict": "not tested", "note": ""}
    best_small, best_large = small[col].max(), large[col].max()
    gap = best_large - best_small
    verdict = HOLDS if gap > margin else FAILS if gap < -margin else PARTLY
    return {"claim": "k > 5 images per mix are needed",
            "evidence": f"{_label(col)} by k: " + ", ".join(
                f"{int(k)}: {v:.4f}" for k, v in zip(df["k"], df[col]))
                        + f"; best k > 5 minus best k <= 5: {gap:+.4f}" + _runs_note(mim, seeds),
            "rule": f"holds if the best k > 5 is better by more than {margin:.4f}; does not "
                    "hold if worse by as much; partly (a tie) otherwise",
            "verdict": verdict, "note": ""}


def augmentation_helps(exp: Experiment, mim: dict[str, Any], margin: float,
                       a_lot: float = 0.01, seeds: Sequence[int] = (0,)) -> dict[str, Any]:
    """Post-mix augmentation always on against off, all else equal (means over seeds)."""
    runs = sweep(exp, exp.base_model(), mim, [{"aug_p": 0.0}, {"aug_p": 1.0}],
                 include_base=False, seeds=seeds)
    col = _metric(runs.columns)
    df = sweep_spread(runs, (col,))  # one row per variant: the mean over seeds
    off, on = df[col].iloc[0], df[col].iloc[1]
    gain = on - off
    verdict = HOLDS if gain > max(a_lot, margin) else PARTLY if gain > margin else FAILS
    return {"claim": "Augmentation after mixing helps a lot",
            "evidence": f"{_label(col)} without augmentation {off:.4f}, with {on:.4f} "
                        f"({gain:+.4f})" + _runs_note(mim, seeds),
            "rule": f"holds if the gain exceeds {max(a_lot, margin):.4f}; partly if it exceeds "
                    f"the noise {margin:.4f}", "verdict": verdict, "note": ""}


def costs_little(exp: Experiment, mim: dict[str, Any], benchmark: str | None = None,
                 overhead: float = 0.1) -> dict[str, Any]:
    """MIM's step against a plain step on twice the batch (MIM forwards the ID and the mixed
    batch): the extra is mixing and augmentation. Their cost per step comes from the speed
    benchmark when one is committed (an idle machine); the step time from the stored control
    run (the same steps on the ID batch alone). Without a benchmark, the two runs' wall times."""
    from .runtime import benchmark_rows

    base = exp.base_model()
    runs = {name: exp.mim_model(base, **params).record["result"]
            for name, params in (("MIM", mim), ("control", {**mim, "lam": 0.0}))}
    step = {name: r["seconds"] / max(len(r["log"]), 1) for name, r in runs.items()}
    device = resolve_device(exp.setup.device).type
    same_model = benchmark_rows(benchmark, device, exp.setup.arch) if benchmark else []
    measured = {row["measure"].split(",")[0]: row["value"] for row in same_model}
    rows = benchmark_rows(benchmark, device) if benchmark else []
    own = next((row["value"] / 1000 for row in rows
                if row["measure"].startswith("(b) MIM's own work")), None)
    if "(b) MIM step / plain step" in measured:  # this model, timed on an idle machine
        ratio = measured["(b) MIM step / plain step"]
        evidence = (f"a MIM step of {exp.setup.arch} (128 ID + 128 mixed images) takes "
                    f"{measured['(b) MIM step (B ID + B mixed)']:.0f} ms, a plain step on 256 "
                    f"images {measured['(b) plain step on 2B images']:.0f} ms (speed benchmark, "
                    f"idle machine): {ratio:.3f} x")
    elif own is not None:
        ratio = 1 + own / (2 * step["control"])
        evidence = (f"mixing + augmentation {own * 1000:.0f} ms per step (speed benchmark, batch "
                    f"128, k = 10) against {2 * step['control'] * 1000:.0f} ms for a plain step "
                    f"on twice the batch (the stored control run): {ratio:.3f} x")
    else:
        ratio = step["MIM"] / (2 * step["control"])
        evidence = (f"MIM {step['MIM'] * 1000:.0f} ms per step, the control "
                    f"{step['control'] * 1000:.0f} ms: {ratio:.3f} x a plain step on twice the "
                    "batch (wall times of two runs)")
    verdict = HOLDS if ratio <= 1 + overhead else PARTLY if ratio <= 1 + 3 * overhead else FAILS
    return {"claim": "MIM costs little",
            "evidence": evidence + f"; one epoch, against the {_epochs_note(exp)}",
            "rule": f"holds if a MIM step costs at most {1 + overhead:.1f} x a plain step on twice "
                    f"the batch; partly up to {1 + 3 * overhead:.1f} x",
            "verdict": verdict,
            "note": f"on {exp.setup.device}; the runtime chapter has every stored wall time"}


def _label(column: str) -> str:
    return "mean AUROC over the natural-image sets" if column == NATURAL else "mean AUROC"


def _epochs_note(exp: Experiment) -> str:
    s = exp.setup
    if s.base == "pretrain":
        return f"{s.pretrain_epochs:g} epochs of pretraining"
    return "hundreds of epochs that trained the published weights"


def claims_table(exp: Experiment, mim: dict[str, Any], *, detectors: Sequence[str],
                 protocols: Sequence[str], ks: Sequence[int], ablation: dict[str, Any],
                 eval_every: int, seeds: Sequence[int], benchmark: str | None = None,
                 ablation_seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """Every claim with its set-up, evidence, rule and verdict (the chapters' own runs;
    ``ablation_seeds`` are the fine-tuning seeds of the k and augmentation ablations)."""
    s = exp.setup
    setting = (f"{s.arch} ({s.base}{', adapted' if s.adapt_epochs else ''}), "
               f"{len(s.ood_sets)} OOD sets, {s.protocol} protocol")
    margin = noise_margin(exp, mim, seeds)
    ablations = {**mim, **ablation}
    rows = [
        {**beats_baselines(exp, mim, detectors, protocols, margin),
         "set-up": setting.replace(f", {s.protocol} protocol", "") + ", "
                   + " and ".join(protocols)},
        {**accuracy_kept(exp, mim, protocols),
         "set-up": setting.replace(f", {s.protocol} protocol", "") + ", "
                   + " and ".join(protocols)},
        {**one_epoch_enough(exp, mim, eval_every, margin), "set-up": setting},
        {**k_above_five(exp, ablations, ks, margin, ablation_seeds), "set-up": setting},
        {**augmentation_helps(exp, ablations, margin, seeds=ablation_seeds),
         "set-up": setting},
        {**costs_little(exp, mim, benchmark), "set-up": setting},
    ]
    columns = ["claim", "verdict", "evidence", "set-up", "rule", "note"]
    return pd.DataFrame(rows)[columns].assign(noise=margin)


def landing_headline(claims: pd.DataFrame, provenance: str,
                     link: str = "executed/15_claims.html") -> str:
    """The book's opening result as HTML (the landing page pastes it): the paper's central
    claim, our evidence and verdict with its set-up, how many claims hold, and a link to them."""
    from html import escape

    from ..report import paper_numbers

    paper = paper_numbers()
    mim = paper[(paper.table == "table1") & (paper.method == "MIM")
                & (paper.ood_dataset == "average")].set_index("id_dataset")["auroc"]
    first = claims.iloc[0]
    held = int((claims["verdict"] == HOLDS).sum())
    return (
        '<div class="mimlib-headline">'
        "<p><b>The paper's claim:</b> one epoch of MIM fine-tuning makes the maximum softmax "
        "probability beat every post-hoc OOD detector (mean AUROC "
        f"{mim['cifar10']:.4f} on CIFAR-10 with a WRN-40-2 and seven OOD sets, "
        f"{mim['cifar100']:.4f} on CIFAR-100).</p>"
        f"<p><b>Our measurement:</b> {escape(first['evidence'])}. Set-up: "
        f"{escape(first['set-up'])}. Verdict: <b>{escape(first['verdict'])}</b>.</p>"
        f"<p>{held} of the paper's {len(claims)} claims hold here; each with its evidence and "
        f'rule: <a href="{escape(link)}">the paper\'s claims, tested</a>.</p>'
        f"<p><i>({escape(provenance)})</i></p></div>")

