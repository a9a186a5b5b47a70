"""The paper's claims, each tested on the stored runs of the chapters, with a verdict per protocol.

Every comparison is paired (the same test images; the same fine-tuning seeds where both arms
have them) and carries a 95% interval (:mod:`.stats`: a bootstrap over seeds and test images
from the stored per-image scores; over seeds alone for the points of a training curve, which
keep no per-image scores). A verdict needs the interval on the claimed side of zero (or of the
stated tolerance); where it straddles it, the verdict says the difference is not resolved at
this number of seeds and images. OOD sets are judged by group, as the field reports them
(:mod:`mimlib.companion.results.catalog`: near-OOD, far-OOD; the OE paper's noise is shown, not judged:
the paper's claims are about natural images). Each claim is judged in each protocol, and batch-norm
handling, a design choice rather than a quirk, as a sensitivity column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..results.catalog import GROUP_LABELS, display_name, groups_of
from ...device import planned_device
from ...errors import ConfigError
from ..results.experiment import Experiment
from ..results.runs import ModelRun
from ..results.protocol import check_protocol
from .runtime import benchmark_rows
from .stats import Interval, seed_difference, stored_auroc_difference, stored_mean_difference
from .tables import replace_setup

HOLDS, PARTLY, FAILS, NOT_RESOLVED, NOT_RUN = (
    "holds", "partly", "does not hold", "not resolved", "not run")
JUDGED_GROUPS = ("near", "far")  # the paper's claims are about natural images
FLAT = 0.005  # AUROC: "flat at the end of the epoch" means within this, at 95%
ACCURACY_TOLERANCE = 0.01  # "accuracy is kept": at most one point lost, at 95%


@dataclass(frozen=True)
class Column:
    """One column of verdicts: a protocol, or a sensitivity (the protocol with some MIM
    settings changed); ``ablations`` / ``curves``: whether its ablation runs / per-set training
    curves exist (a sensitivity may reuse runs computed before, and only those)."""

    label: str
    protocol: str
    overrides: dict[str, Any] = field(default_factory=dict)
    ablations: bool = True
    curves: bool = True
    per_image_accuracy: bool = True


def columns_from(specs: Sequence[dict[str, Any]]) -> list[Column]:
    """Columns from plain mappings (a notebook parameter): ``label``, ``protocol`` and the
    optional ``overrides`` (MIM settings), ``ablations``, ``curves``, ``per_image_accuracy``."""
    known = {f for f in Column.__dataclass_fields__}
    columns = []
    for spec in specs:
        if not isinstance(spec, dict) or not {"label", "protocol"} <= set(spec):
            raise ConfigError(f"a claims column is a mapping with a label and a protocol "
                              f"(and optionally {sorted(known - {'label', 'protocol'})}), got "
                              f"{spec!r}")
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ConfigError(f"unknown field(s) {unknown} of claims column {spec['label']!r}; "
                              f"known: {sorted(known)}")
        check_protocol(spec["protocol"])
        columns.append(Column(**spec))
    if len({c.label for c in columns}) != len(columns):
        raise ConfigError(f"claims columns need distinct labels, got {[c.label for c in columns]}")
    return columns


@dataclass
class Judgement:
    """A verdict in one column, its evidence in words and the intervals it rests on."""

    verdict: str
    evidence: str
    intervals: dict[str, Any] = field(default_factory=dict)


def side_verdict(interval: Interval) -> str:
    """holds / does not hold when the interval lies above / below zero, else not resolved."""
    return {1: HOLDS, -1: FAILS, 0: NOT_RESOLVED}[interval.side()]


def combine(verdicts: Sequence[str]) -> str:
    """One verdict from the groups' (near, far): holds everywhere; partly where it holds (or
    partly holds) somewhere; does not hold where it fails somewhere and holds nowhere; not
    resolved otherwise. Groups that were not run are left out."""
    run = [v for v in verdicts if v != NOT_RUN]
    if not run:
        return NOT_RUN
    if all(v == HOLDS for v in run):
        return HOLDS
    if any(v in (HOLDS, PARTLY) for v in run):
        return PARTLY
    return FAILS if FAILS in run else NOT_RESOLVED


# --------------------------------------------------------------------------- reading runs

def _experiment(template: Experiment, column: Column) -> Experiment:
    return template.derive(replace_setup(template.setup, protocol=column.protocol))


def _runs(exp: Experiment, base: ModelRun, params: dict[str, Any], seeds: Sequence[int],
          **extra: Any) -> list[ModelRun]:
    return [exp.mim_model(base, **extra, **{**params, "seed": seed}) for seed in seeds]


def _scores(exp: Experiment, run: ModelRun, detector: str = "MSP") -> dict[str, np.ndarray]:
    """Per-image scores of one detector: ``__id__`` and every OOD set."""
    return exp.per_image_scores(run, detector)


def _groups(exp: Experiment, base: ModelRun) -> dict[str, list[str]]:
    """The OOD sets of this experiment by group (read from a stored evaluation: no data)."""
    return groups_of([row["ood"] for row in exp.evaluate(base, ("MSP",)).rows])


def _group_mean(rows: list[dict[str, Any]], sets: Sequence[str], key: str = "detector",
                name: str = "MSP") -> float:
    return float(np.mean([r["auroc"] for r in rows if r.get(key, name) == name
                          and r["ood"] in sets]))


def _sets_text(sets: Sequence[str]) -> str:
    return ", ".join(display_name(s) for s in sets)


def _seeds_note(seeds: Sequence[int]) -> str:
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"


# --------------------------------------------------------------------------- the claims

def beats_baselines(template: Experiment, column: Column, mim: dict[str, Any],
                    detectors: Sequence[str], seeds: Sequence[int]) -> Judgement:
    """MIM (MSP after fine-tuning) against the best post-hoc detector on the starting model,
    and against its control (the same fine-tuning without mixed images), per OOD group."""
    exp = _experiment(template, column)
    base = exp.base_model()
    params = {**mim, **column.overrides}
    mim_arms = [_scores(exp, run) for run in _runs(exp, base, params, seeds)]
    control_arms = [_scores(exp, run) for run in _runs(exp, base, {**params, "lam": 0.0}, seeds)]
    rows = exp.evaluate(base, tuple(detectors)).rows
    verdicts, parts, intervals = [], [], {}
    for group, sets in _groups(exp, base).items():
        means = {d: _group_mean(rows, sets, name=d) for d in detectors}
        best = max(means, key=means.get)
        vs_best = stored_auroc_difference(exp, mim_arms, [_scores(exp, base, best)], sets)
        vs_control = stored_auroc_difference(exp, mim_arms, control_arms, sets)
        intervals[group] = {"best": best, "vs_best": vs_best, "vs_control": vs_control,
                            "sets": sets}
        if group in JUDGED_GROUPS:
            verdicts.append(side_verdict(vs_best))
        parts.append(f"{GROUP_LABELS[group]} ({_sets_text(sets)}): MIM minus the best baseline "
                     f"({best}) {vs_best.text()}, minus its control {vs_control.text()}")
    return Judgement(combine(verdicts), "; ".join(parts) + f" ({_seeds_note(seeds)})",
                     intervals)


def accuracy_kept(template: Experiment, column: Column, mim: dict[str, Any],
                  seeds: Sequence[int]) -> Judgement:
    """ID test accuracy after MIM against after its control (paired by image and seed); the
    model before fine-tuning is shown beside."""
    exp = _experiment(template, column)
    base = exp.base_model()
    params = {**mim, **column.overrides}
    runs = {"MIM": _runs(exp, base, params, seeds),
            "control": _runs(exp, base, {**params, "lam": 0.0}, seeds)}
    accuracy = {name: [exp.evaluate(r, ("MSP",)).accuracy for r in rs]
                for name, rs in runs.items()}
    if column.per_image_accuracy:
        diff = stored_mean_difference(exp, *[[exp.predictions(r) for r in runs[name]]
                                             for name in ("MIM", "control")])
    else:  # runs computed before per-image predictions were stored (no weights kept)
        diff = seed_difference(accuracy["MIM"], accuracy["control"])
    verdict = (HOLDS if diff.low > -ACCURACY_TOLERANCE else
               FAILS if diff.high < -ACCURACY_TOLERANCE else NOT_RESOLVED)
    before = exp.evaluate(base, ("MSP",)).accuracy
    return Judgement(verdict, f"MIM minus control {diff.text()} ({_seeds_note(seeds)}, "
                              f"{diff.method}); accuracy before fine-tuning {before:.4f}, after "
                              f"the control {np.mean(accuracy['control']):.4f}, after MIM "
                              f"{np.mean(accuracy['MIM']):.4f}", {"all": diff})


def one_epoch_enough(template: Experiment, column: Column, mim: dict[str, Any],
                     seeds: Sequence[int], eval_every: int) -> Judgement:
    """The training curves (every ``eval_every`` steps, per OOD set): is the end of the epoch
    where AUROC levels off, or is it still rising, or past its peak?"""
    if not column.curves:
        return Judgement(NOT_RUN, "no per-set training curves were computed in this setting")
    exp = _experiment(template, column)
    base = exp.base_model()
    curves = [pd.DataFrame(run.evals) for run in _runs(exp, base, {**mim, **column.overrides},
                                                       seeds, eval_every=eval_every,
                                                       per_set_curve=True)]
    steps = curves[0]["step"].to_numpy()
    two_thirds = int(steps[steps <= 2 * steps.max() / 3].max())
    verdicts, parts, intervals = [], [], {}
    for group, sets in groups_of([c[6:-1] for c in curves[0] if c.startswith("auroc[")]).items():
        per_seed = np.stack([c[[f"auroc[{s}]" for s in sets]].mean(axis=1).to_numpy()
                             for c in curves])  # (seeds, steps)
        mean = per_seed.mean(0)
        peak = int(mean.argmax())
        late = int(np.flatnonzero(steps == two_thirds)[0])
        rise = seed_difference(per_seed[:, -1], per_seed[:, late])
        drop = seed_difference(per_seed[:, -1], per_seed[:, peak])
        if rise.low > 0 and rise.estimate > FLAT:
            verdict, why = FAILS, "still rising over the last third"
        elif drop.high < 0 and drop.estimate < -FLAT:
            verdict, why = PARTLY, "less than an epoch is better: past its peak at the end"
        elif -FLAT < rise.low and rise.high < FLAT and drop.low > -FLAT:
            verdict, why = HOLDS, f"flat at the end (within {FLAT})"
        else:
            verdict, why = NOT_RESOLVED, "the intervals are too wide to tell"
        intervals[group] = {"rise": rise, "drop": drop, "verdict": verdict}
        if group in JUDGED_GROUPS:
            verdicts.append(verdict)
        parts.append(f"{GROUP_LABELS[group]}: {mean[0]:.4f} at step 0, peak {mean[peak]:.4f} at "
                     f"step {int(steps[peak])}, {mean[late]:.4f} at step {two_thirds}, "
                     f"{mean[-1]:.4f} at the end; end minus step {two_thirds} {rise.text()}, "
                     f"end minus peak {drop.text()}: {why}")
    limit = exp.setup.curve_limit or "all"
    return Judgement(combine(verdicts), "; ".join(parts) + f" ({_seeds_note(seeds)}, t "
                     f"intervals; the curve scores {limit} images per set)", intervals)


def _variant_difference(template: Experiment, column: Column, params: dict[str, Any],
                        variants: dict[str, list[dict[str, Any]]], seeds: Sequence[int],
                        ) -> tuple[list[str], list[str], dict[str, Any]]:
    """For each group: the best variant of each named family (by the mean over seeds of the
    group's mean AUROC) and the paired interval of the first family's best minus the second's."""
    exp = _experiment(template, column)
    base = exp.base_model()
    families = {name: [(v, _runs(exp, base, {**params, **v}, seeds)) for v in options]
                for name, options in variants.items()}
    verdicts, parts, intervals = [], [], {}
    for group, sets in _groups(exp, base).items():
        best = {}
        for name, options in families.items():
            scored = [(np.mean([_group_mean(exp.evaluate(r, ("MSP",)).rows, sets) for r in runs]),
                       v, runs) for v, runs in options]
            best[name] = max(scored, key=lambda item: item[0])
        (first, v1, runs1), (second, v2, runs2) = best.values()
        diff = stored_auroc_difference(exp, [_scores(exp, r) for r in runs1],
                                       [_scores(exp, r) for r in runs2], sets)
        intervals[group] = diff
        if group in JUDGED_GROUPS:
            verdicts.append(side_verdict(diff))
        names = [", ".join(f"{k}={x}" for k, x in v.items()) for v in (v1, v2)]
        parts.append(f"{GROUP_LABELS[group]}: {names[0]} {first:.4f} minus {names[1]} "
                     f"{second:.4f}: {diff.text()}")
    return verdicts, parts, intervals


def k_above_five(template: Experiment, column: Column, params: dict[str, Any],
                 ks: Sequence[int], seeds: Sequence[int]) -> Judgement:
    """The k ablation: the best k > 5 against the best k <= 5, per group."""
    if not column.ablations:
        return Judgement(NOT_RUN, "no k-ablation runs in this setting (see the k ablation page)")
    large, small = [{"k": k} for k in ks if k > 5], [{"k": k} for k in ks if k <= 5]
    if not large or not small:
        return Judgement(NOT_RUN, f"ks {list(ks)} do not straddle 5")
    verdicts, parts, intervals = _variant_difference(
        template, column, params, {"large": large, "small": small}, seeds)
    return Judgement(combine(verdicts), "; ".join(parts) + _ablation_note(params, seeds),
                     intervals)


def augmentation_helps(template: Experiment, column: Column, params: dict[str, Any],
                       seeds: Sequence[int]) -> Judgement:
    """Post-mix augmentation always on against off, all else equal, per group."""
    if not column.ablations:
        return Judgement(NOT_RUN, "no augmentation-ablation runs in this setting (see its page)")
    verdicts, parts, intervals = _variant_difference(
        template, column, params, {"on": [{"aug_p": 1.0}], "off": [{"aug_p": 0.0}]}, seeds)
    return Judgement(combine(verdicts), "; ".join(parts) + _ablation_note(params, seeds),
                     intervals)


def _ablation_note(params: dict[str, Any], seeds: Sequence[int]) -> str:
    parts = ([f"{params['steps']} steps per run"] if params.get("steps") else []) + (
        [f"{params['precision']}"] if params.get("precision", "fp32") != "fp32" else []) + [
        _seeds_note(seeds)]
    return f" ({', '.join(parts)})"


def costs_little(exp: Experiment, mim: dict[str, Any], benchmark: str | None = None,
                 overhead: float = 0.1) -> dict[str, Any]:
    """MIM's step against a plain step on twice the batch (MIM forwards the ID and the mixed
    batch): the extra is mixing and augmentation. Their cost per step comes from the speed
    benchmark when one is committed (an idle machine); the step time from the stored control
    run (the same steps on the ID batch alone). Without a benchmark, the two runs' wall times."""
    base = exp.base_model()
    runs = {name: exp.mim_model(base, **params).record["result"]
            for name, params in (("MIM", mim), ("control", {**mim, "lam": 0.0}))}
    step = {name: r["seconds"] / max(len(r["log"]), 1) for name, r in runs.items()}
    device = planned_device(exp.setup.device).type
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
            "verdict": verdict, "ratio": ratio,
            "note": f"on {exp.setup.device}; the runtime chapter has every stored wall time"}


def _epochs_note(exp: Experiment) -> str:
    s = exp.setup
    if not s.base_spec.loaded:
        return f"{s.pretrain_epochs:g} epochs of pretraining"
    return "hundreds of epochs that trained the published weights"


def _cost(exp: Experiment, mim: dict[str, Any], benchmark: str | None) -> Judgement:
    row = costs_little(exp, mim, benchmark)
    return Judgement(row["verdict"], f"{row['evidence']} ({row['note']})",
                     {"rule": row["rule"], "ratio": row["ratio"]})


def short_evidence(claim: int, judgement: Judgement) -> str:
    """The evidence of one verdict in a few words (the estimates of the judged groups; the
    intervals are in the forest plots, the full evidence in the table's CSV): ``claim`` is the
    index in :data:`CLAIMS`."""
    iv = judgement.intervals
    if judgement.verdict == NOT_RUN or not iv:
        return NOT_RUN
    groups = [g for g in JUDGED_GROUPS if g in iv]
    if claim == 0:
        return ", ".join(f"{g} {iv[g]['vs_best'].estimate:+.3f} ({iv[g]['best']})"
                         for g in groups)
    if claim == 1:
        return f"{iv['all'].estimate:+.3f}"
    if claim == 2:
        return "end − 2/3: " + ", ".join(f"{g} {iv[g]['rise'].estimate:+.3f}" for g in groups)
    if claim == len(CLAIMS) - 1:
        return f"{iv['ratio']:.2f} x a plain step"
    return ", ".join(f"{g} {iv[g].estimate:+.3f}" for g in groups)


CLAIMS = (
    ("MIM beats every post-hoc baseline on AUROC",
     "per group (near- and far-OOD; noise shown, not judged): MIM minus the best of the "
     "detectors on the starting model (the best on that group); holds where the 95% interval "
     "lies above zero, does not hold where below; holds overall if it holds on both groups, "
     "partly if on one"),
    ("ID accuracy is kept",
     f"MIM minus the control (the same fine-tuning without mixed images): holds if the 95% "
     f"interval lies above -{ACCURACY_TOLERANCE}, does not hold if below it"),
    ("One epoch of fine-tuning is enough",
     f"per group, on the training curve: does not hold if the end minus the point at two "
     f"thirds of the epoch is above zero and by more than {FLAT} (still rising); partly if the "
     f"end minus the peak is below zero and by more than {FLAT} (past its peak); holds if the "
     f"first lies within +-{FLAT} and the second above -{FLAT} (flat); 95% t intervals over "
     f"seeds"),
    ("k > 5 images per mix are needed",
     "per group: the best k > 5 minus the best k <= 5 (chosen on the mean over seeds); holds "
     "where the 95% interval lies above zero, does not hold where below"),
    ("Augmentation after mixing helps",
     "per group: augmentation always on minus off; holds where the 95% interval lies above "
     "zero, does not hold where below"),
    ("MIM costs little",
     "holds if a MIM step costs at most 1.1 x a plain step on twice the batch; partly up to "
     "1.3 x (the same in every protocol: it is a cost)"),
)


def claims_table(exp: Experiment, mim: dict[str, Any], *, detectors: Sequence[str],
                 columns: Sequence[Column], ks: Sequence[int], ablation: dict[str, Any],
                 eval_every: int, seeds: Sequence[int], ablation_seeds: Sequence[int],
                 benchmark: str | None = None) -> pd.DataFrame:
    """Every claim with a verdict per column (protocol or sensitivity), its evidence in a few
    words (``evidence``: the estimates), the rule, and the full evidence (``details``:
    every interval, in brackets). ``df.attrs["judgements"]`` keeps the intervals."""
    cost = _cost(exp, mim, benchmark)
    judgements: dict[str, list[Judgement]] = {}
    for column in columns:
        ablations = {**mim, **ablation, **column.overrides}
        # the curves first: a run missing its curve trains again and keeps its weights, which
        # the per-image accuracy then reads instead of training the same run a second time
        curves = one_epoch_enough(exp, column, mim, seeds, eval_every)
        judgements[column.label] = [
            beats_baselines(exp, column, mim, detectors, seeds),
            accuracy_kept(exp, column, mim, seeds),
            curves,
            k_above_five(exp, column, ablations, ks, ablation_seeds),
            augmentation_helps(exp, column, ablations, ablation_seeds),
            cost,
        ]
    rows = []
    for i, (claim, rule) in enumerate(CLAIMS):
        row: dict[str, Any] = {"claim": claim}
        row.update({label: js[i].verdict for label, js in judgements.items()})
        shown = [(label, js[i]) for label, js in judgements.items()
                 if i != len(CLAIMS) - 1 or label == columns[0].label]  # the cost: once
        row["evidence"] = "; ".join(f"{label}: {short_evidence(i, j)}" for label, j in shown)
        row["rule"] = rule
        row["details"] = " ".join(f"**{label}:** {j.evidence}." for label, j in shown)
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["judgements"] = judgements
    return df


