"""Tables of runs: Table 1 with its control, summaries, sweeps, set-ups, the paper beside ours."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ... import pins
from ..results.catalog import groups_of
from ...data_checks import known_num_classes
from ...detectors import NEWER_DETECTORS
from ...errors import ConfigError
from ..results.experiment import Experiment
from ..results.runs import Evaluation, ModelRun
from ..results.setup import Setup
from ...models import published_oe_weights
from .report import compare_with_paper, is_mean_row, with_average
from ...specs import BaseSpec


def evaluation_frame(evaluation: Evaluation, method: str | None = None) -> pd.DataFrame:
    """Rows (method, ood, auroc, aupr_in, aupr_out, fpr95) of one evaluation."""
    df = pd.DataFrame(evaluation.rows).rename(columns={"detector": "method"})
    if method is not None:
        df["method"] = method
    return df[["method", "ood", "auroc", "aupr_in", "aupr_out", "fpr95"]]


CONTROL = "control (λ=0)"


NOT_ADAPTED = "MSP, published (not adapted)"


#: How Table 1 marks the rows of detectors that are not in the paper (shown below its rows).
NOT_IN_PAPER = " (not in the paper)"


def table1(exp: Experiment, base: ModelRun, mim: ModelRun, detectors: Sequence[str], *,
           control: ModelRun | None = None) -> pd.DataFrame:
    """The paper's Table 1 for one protocol: every detector on the base model, MSP after MIM;
    with ``control``, MSP after the same fine-tuning without the mixed images (lambda = 0);
    when the base was adapted to the ID data, MSP of the published model as it is. Detectors
    that are not in the paper come last, marked :data:`NOT_IN_PAPER`."""
    paper = tuple(d for d in detectors if d not in NEWER_DETECTORS)
    newer = tuple(d for d in detectors if d in NEWER_DETECTORS)
    frames = [evaluation_frame(exp.evaluate(base, paper))] if paper else []
    frames.append(evaluation_frame(exp.evaluate(mim, ("MSP",)), method="MIM"))
    if control is not None:
        frames.append(evaluation_frame(exp.evaluate(control, ("MSP",)), method=CONTROL))
    if exp.setup.adapt_epochs:
        frames.append(evaluation_frame(exp.evaluate(exp.loaded_model(), ("MSP",)),
                                       method=NOT_ADAPTED))
    if newer:
        later = evaluation_frame(exp.evaluate(base, newer))
        frames.append(later.assign(method=later["method"] + NOT_IN_PAPER))
    return pd.concat(frames, ignore_index=True)


@dataclasses.dataclass
class Table1Grid:
    """Table 1 over several ID sets and protocols: every cell with the paper's number beside
    it (where the paper has one), the setup that made each (ID set label, protocol) block, and
    a warning for each MIM model whose accuracy collapsed."""

    cells: pd.DataFrame
    setups: dict[tuple[str, str], Setup]
    warnings: list[str]


def table1_grid(template: Experiment, id_datasets: Sequence[str], protocols: Sequence[str],
                mim: dict[str, Any], detectors: Sequence[str],
                paper_ids: dict[str, str] | None = None) -> Table1Grid:
    """:func:`table1` (with its control) for every ID set and protocol, as the main table and
    the reproduction report show it; each run comes from the store when it is there."""
    frames, setups, evaluations, classes = [], {}, {}, {}
    for id_data in id_datasets:
        for protocol in protocols:
            exp = template.derive(replace_setup(template.setup, id_data=id_data,
                                                protocol=protocol))
            base = exp.base_model()
            run = exp.mim_model(base, **mim)
            control = exp.mim_model(base, **{**mim, "lam": 0.0})  # same steps, no mixed images
            rows = compare_with_paper(with_average(table1(exp, base, run, detectors,
                                                          control=control)),
                                      paper_id(id_data, paper_ids))
            name = pins.display(id_data)  # short spec: keys the cells; data_label shows it
            frames.append(rows.assign(id_data=name, protocol=protocol))
            setups[(name, protocol)] = exp.setup
            evaluations[(name, protocol)] = exp.evaluate(run)
            classes[name] = num_classes(exp)
    return Table1Grid(pd.concat(frames, ignore_index=True), setups,
                      collapse_warnings(evaluations, classes))


def group_means(rows: list[dict[str, Any]], metric: str = "auroc") -> dict[str, float]:
    """The mean of a metric over each group of OOD sets (near, far, noise: see
    :mod:`mimlib.companion.results.catalog`), as ``mean_<metric>_<group>`` for the groups present."""
    sets = [r["ood"] for r in rows]
    return {f"mean_{metric}_{group}": float(np.mean([r[metric] for r in rows
                                                      if r["ood"] in members]))
            for group, members in groups_of(sets).items()}


def summary_row(exp: Experiment, run: ModelRun, **labels: Any) -> dict[str, Any]:
    """Mean MSP metrics over the OOD sets (all, and per group: near, far, noise), per-set
    AUROC and ID accuracy of one model."""
    ev = exp.evaluate(run, ("MSP",))
    per_set = {f"auroc[{r['ood']}]": r["auroc"] for r in ev.rows}
    means = ev.record["result"]["means"]["MSP"]
    return {**labels, "mean_auroc": means["auroc"], **group_means(ev.rows),
            "mean_aupr_out": means["aupr_out"], "mean_fpr95": means["fpr95"],
            "accuracy": ev.accuracy, **per_set}


#: How a variant names a setting left at ``None`` (the setting's own default).
NONE_NAMES = {"steps": "one epoch"}


def variant_name(variant: dict[str, Any]) -> str:
    """A variant's label in tables and figures: ``k=v`` for each changed setting
    (``steps=one epoch`` where ``steps`` is None: the length comes from ``epochs``)."""
    return ", ".join(f"{k}={NONE_NAMES.get(k, v) if v is None else v}"
                     for k, v in variant.items()) or "default"


def sweep(exp: Experiment, base: ModelRun, mim: dict[str, Any],
          variants: Iterable[dict[str, Any]], *, include_base: bool = True,
          seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """MIM runs that differ from ``mim`` by each variant, once per fine-tuning seed (batch
    order, mixing and augmentation; the starting model is the same); one summary row per run,
    with its ``seed`` (none for the model before fine-tuning)."""
    variants, seeds = list(variants), list(seeds)
    if not seeds:
        raise ConfigError("seeds is empty: give at least one fine-tuning seed, e.g. [0]")
    rows = []
    if include_base:  # the model before, once: fine-tuning seeds do not touch it
        rows.append(summary_row(exp, base, variant="no fine-tuning", seed=None))
    for seed in seeds:
        if include_base:  # the same fine-tuning without mixed images
            rows.append(summary_row(exp, exp.mim_model(base, **{**mim, "lam": 0.0, "seed": seed}),
                                    variant=CONTROL, seed=seed))
        for variant in variants:
            run = exp.mim_model(base, **{**mim, **variant, "seed": seed})
            name = variant_name(variant)
            rows.append(summary_row(exp, run, variant=name, seed=seed, **variant))
    df = pd.DataFrame(rows).astype({"seed": "Int64"})
    order = {name: i for i, name in enumerate(dict.fromkeys(df["variant"]))}
    df = df.sort_values("variant", key=lambda v: v.map(order), kind="stable")
    for key in {k for v in variants for k in v}:  # whole-number settings stay whole numbers
        values = [v[key] for v in variants if key in v]
        if all(isinstance(x, int) and not isinstance(x, bool) for x in values):
            df[key] = df[key].astype("Int64")  # the base row's missing value becomes <NA>
    return df.reset_index(drop=True)


def sweep_bn_modes(exp: Experiment, base: ModelRun, mim: dict[str, Any],
                   variants: Iterable[dict[str, Any]], *, include_base: bool = True,
                   seeds: Sequence[int] = (0,),
                   bn_modes: Sequence[str] = ("frozen",)) -> pd.DataFrame:
    """A :func:`sweep` once per batch-norm mode (its ``bn_mode`` column; the control once per
    mode, the model before once); with more than one mode each variant's name ends with it."""
    variants, bn_modes = list(variants), list(bn_modes)
    if not bn_modes:
        raise ConfigError("bn_modes is empty: give at least one, e.g. ['frozen']")
    df = pd.concat([sweep(exp, base, {**mim, "bn_mode": mode}, variants, seeds=seeds,
                          include_base=include_base)
                    .assign(bn_mode=mode) for mode in bn_modes], ignore_index=True)
    df = df[~(df.variant == "no fine-tuning") | ~df.duplicated("variant")]  # the model before once
    df = df.reset_index(drop=True)
    before = df.variant == "no fine-tuning"
    df.loc[before, "bn_mode"] = None
    if len(bn_modes) > 1:  # name the mode only where a page compares modes
        df.loc[~before, "variant"] = df.variant + ", BN " + df.bn_mode
    return df


def sweep_spread(df: pd.DataFrame, columns: Sequence[str] = ("mean_auroc", "mean_fpr95",
                                                              "accuracy")) -> pd.DataFrame:
    """One row per variant of a :func:`sweep` (in its order, with its swept settings): the mean
    over seeds, the sample standard deviation (``_sd``, empty for one seed) and the number of
    seeds."""
    columns = [c for c in columns if c in df]
    settings = [c for c in df.columns if c not in columns and c != "seed"
                and not c.startswith(("mean_", "auroc[")) and c != "accuracy"]
    grouped = df.groupby("variant", sort=False)
    out = grouped[settings].first().drop(columns="variant", errors="ignore")
    for col in columns:
        out[col] = grouped[col].mean()
        out[f"{col}_sd"] = grouped[col].std(ddof=1)
    out["seeds"] = grouped["seed"].count().where(lambda n: n > 0, 0)
    return out.reset_index()


def across_setups(template: Experiment, setups: Iterable[tuple[str, Setup]],
                  mim: dict[str, Any], bn_modes: Sequence[str] = ()) -> pd.DataFrame:
    """For each named setup (on the template's store and profile): the base model, MIM and
    its control, summarised (cross-architecture, seeds); MIM and the control once per
    batch-norm mode of ``bn_modes`` (its ``bn_mode`` column, and in ``model`` when there are
    several), or once with ``mim``'s own mode when ``bn_modes`` is empty."""
    modes = list(bn_modes) or [mim.get("bn_mode")]
    rows = []
    for name, setup in setups:
        exp = template.derive(setup)
        base = exp.base_model()
        rows.append(summary_row(exp, base, setup=name, model="base", bn_mode=None))
        for mode in modes:
            changed = {**mim, **({"bn_mode": mode} if mode else {})}
            suffix = f", BN {mode}" if len(modes) > 1 else ""
            rows.append(summary_row(exp, exp.mim_model(base, **changed), setup=name,
                                    model="MIM" + suffix, bn_mode=mode))
            rows.append(summary_row(exp, exp.mim_model(base, **{**changed, "lam": 0.0}),
                                    setup=name, model=CONTROL + suffix, bn_mode=mode))
    return pd.DataFrame(rows)


def oe_comparison(exp: Experiment, mim: dict[str, Any], oe_outliers: str | None,
                  oe: dict[str, Any], published_oe: bool) -> pd.DataFrame:
    """The paper's Table 2 for one ID set: MSP of the base model, MIM and OE fine-tuning (and
    the OE authors' own weights where they exist and ``published_oe`` is set), per OOD set.
    Without an auxiliary set (``oe_outliers`` None) there is no OE row."""
    base = exp.base_model()
    runs = [("MSP", exp, base), ("MIM", exp, exp.mim_model(base, **mim))]
    if oe_outliers is not None:
        runs.append(("OE", exp, exp.oe_model(oe_outliers, base, **oe)))
    oe = published_oe_weights(exp.setup.id_data, exp.setup.arch)
    if published_oe and oe:
        published = exp.derive(replace_setup(exp.setup, base=BaseSpec("registry", oe.key).text))
        runs.append(("OE (published weights)", published, published.base_model()))
    return pd.concat([evaluation_frame(on.evaluate(run), method) for method, on, run in runs],
                     ignore_index=True)


def mean_and_std(df: pd.DataFrame, by: str, columns: Sequence[str]) -> pd.DataFrame:
    """Mean and sample standard deviation of columns per group, as 'mean ± std' strings too."""
    grouped = df.groupby(by, sort=False)[list(columns)]
    mean, std, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    out = pd.DataFrame(index=mean.index)
    for col in columns:
        out[col] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(mean[col], std[col])]
    out["runs"] = count[columns[0]]
    return out.reset_index()


def replace_setup(setup: Setup, **changes: Any) -> Setup:
    """A copy of a setup with some fields changed (validated again)."""
    return dataclasses.replace(setup, **changes)


def paper_id(id_data: str, aliases: dict[str, str] | None = None) -> str | None:
    """The paper's name for an ID set (cifar10 / cifar100), or None when the paper has none.

    ``aliases`` maps other specs to a paper set, e.g. the JPEG CIFAR-10 folder to ``cifar10``
    (comparable only roughly: JPEG pixels).
    """
    if aliases and id_data in aliases:
        return aliases[id_data]
    return id_data if id_data in ("cifar10", "cifar100") else None


def wide_table(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Methods as rows, OOD sets as columns, then the mean of each group of sets (near-OOD,
    far-OOD, the noise sets apart); the average over all natural sets only where the sets are
    the paper's, beside the paper's average and the difference (``average (paper's sets)``,
    ``paper average``, ``Δ average``)."""
    wide = rows.pivot_table(index="method", columns="ood", values=metric, sort=False)
    seen = list(rows["ood"].unique())
    order = [o for o in seen if not is_mean_row(o)] + [o for o in seen if is_mean_row(o)
                                                        and o != "average"]
    paper_col = "paper_auroc" if metric == "auroc" else "paper_aupr"
    same_sets = paper_col in rows and rows.loc[rows["ood"] == "average", paper_col].notna().any()
    out = wide[order].rename(columns=lambda c: c.removeprefix("synthetic_"))
    if same_sets:
        avg = rows[rows["ood"] == "average"].set_index("method")[paper_col]
        out["average (paper's sets)"] = wide["average"]
        out["paper average"] = avg.reindex(wide.index)
        out["Δ average"] = out["average (paper's sets)"] - out["paper average"]
    return out.reset_index()


def agreement(cells: pd.DataFrame) -> pd.DataFrame:
    """Per ID set and protocol: how many cells the paper reports and how far ours are."""
    rows = []
    for (id_data, protocol), df in cells.groupby(["id_data", "protocol"], sort=False):
        paired = df[df["paper_auroc"].notna() & (df["ood"] != "average")]
        diff = paired["diff_auroc"].abs()
        rows.append({"id_data": id_data, "protocol": protocol, "cells": len(paired),
                     "mean |Δ AUROC|": diff.mean() if len(paired) else np.nan,
                     "max |Δ AUROC|": diff.max() if len(paired) else np.nan,
                     "within 0.01": (diff <= 0.01).mean() if len(paired) else np.nan,
                     "within 0.02": (diff <= 0.02).mean() if len(paired) else np.nan})
    return pd.DataFrame(rows)


def headline(cells: pd.DataFrame) -> pd.DataFrame:
    """Per ID set and protocol: the paper's claim in one row, ours beside the paper's.

    Mean AUROC over the OOD sets of MSP, of the best post-hoc baseline and of MIM, and MIM's
    rank among all methods shown (1: best); ``cells`` is the report's cell table with averages.
    """
    rows = []
    averages = cells[cells["ood"] == "average"]
    for (id_data, protocol), df in averages.groupby(["id_data", "protocol"], sort=False):
        row: dict[str, Any] = {"id_data": id_data, "protocol": protocol}
        for source, column in (("", "auroc"), (" (paper)", "paper_auroc")):
            # the paper's post-hoc detectors and MIM; the control, the unadapted model and
            # the detectors not in the paper are context
            means = df.set_index("method")[column].drop([CONTROL, NOT_ADAPTED],
                                                        errors="ignore").dropna()
            means = means[~means.index.str.endswith(NOT_IN_PAPER)]
            baselines = means.drop("MIM", errors="ignore")
            best = baselines.idxmax() if len(baselines) else None
            row[f"MSP{source}"] = means.get("MSP", np.nan)
            row[f"best baseline{source}"] = f"{best} {baselines[best]:.4f}" if best else "—"
            row[f"MIM{source}"] = means.get("MIM", np.nan)
            rank = (means > means["MIM"]).sum() + 1 if "MIM" in means else None
            row[f"MIM rank{source}"] = f"{rank} of {len(means)}" if rank else "—"
        row[CONTROL] = df.set_index("method")["auroc"].get(CONTROL, np.nan)
        rows.append(row)
    order = ["id_data", "protocol", "MSP", "MSP (paper)", "best baseline", "best baseline (paper)",
             "MIM", "MIM (paper)", CONTROL, "MIM rank", "MIM rank (paper)"]
    return pd.DataFrame(rows, columns=order)


def slug(text: str) -> str:
    """A label-safe version of a text for table, figure and glue names: a data-set spec as
    :func:`mimlib.pins.display` shortens it (a label stays what it was when names change), any
    other text (a claim, a column label) from its own words."""
    try:
        text = pins.display(text)
    except ConfigError:  # not a spec (a claim, a column label): its own words
        pass
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[-40:] or "x"


def id_tag(id_data: str, id_datasets: Sequence[str]) -> str:
    """The part of a label that tells one ID set's table from another's on a page: empty on a
    page with one ID set, else ``-`` and the set's readers' name as a slug (``-cifar-100``),
    never a checksum or a path."""
    return "" if len(id_datasets) == 1 else f"-{slug(data_label(id_data))}"


def data_label(spec: str) -> str:
    """A data set as captions, titles and headers name it, for readers: its display name in
    :mod:`mimlib.companion.results.catalog` (the spec, path and pin, is in the provenance line)."""
    from ..results.catalog import spec_display

    return spec_display(spec)


def published_not_run(setup: Setup, archs: Sequence[str]) -> list[str]:
    """Registry keys with published weights for this page's data that ``archs`` leaves out
    (a page says what it did not run, rather than letting the reader assume it was all)."""
    from ...models import PUBLISHED

    if setup.base_spec.kind != "registry" or "/" not in setup.base_spec.value:
        return []
    data = setup.base_spec.value.split("/", 1)[1]
    return [key for key, weights in PUBLISHED.items()
            if key.endswith(f"/{data}") and weights.arch not in archs]


def collapse_warnings(evaluations: dict[tuple[str, str], Evaluation],
                      num_classes: dict[str, int]) -> list[str]:
    """Warnings for fine-tuned models whose ID accuracy fell to chance (one text each)."""
    notes = []
    for (id_data, protocol), ev in evaluations.items():
        chance = 1.0 / num_classes[id_data]
        if ev.accuracy < 2 * chance:
            notes.append(
                f"MIM collapsed on {id_data} under the {protocol} protocol: ID "
                f"accuracy {ev.accuracy:.3f} (chance {chance:.3f}); the classifier outputs "
                "nearly the uniform distribution for every input, so its AUROC is about 0.5; "
                "lower the learning rate or lam and check the run's log (ID accuracy and the "
                "mixes' MSP).")
    return notes



def per_class_accuracy(exp: Experiment, run: ModelRun) -> pd.DataFrame:
    """Top-1 accuracy on the ID test set per class (stored)."""
    config = {"what": "per_class_accuracy", "model": run.recipe, "data": exp.eval_data_key()}

    def compute() -> tuple[dict, None]:
        reps = exp.representations(run.model, exp.id_test)
        pred = reps.logits.argmax(1)
        return {"rows": [{"class": name, "accuracy": float((pred[reps.labels == c] == c)
                                                           .float().mean())}
                         for c, name in enumerate(exp.id_test.classes)]}, None

    return pd.DataFrame(exp.stored("analysis", config, compute).record["result"]["rows"])


def starting_points(exp: Experiment) -> pd.DataFrame:
    """The classifier MIM starts from, and (when it was adapted to the ID data) the published
    one as it is: where it comes from, the training done here, and its ID test accuracy."""
    base = exp.base_model()
    runs = [("published, as it is", exp.loaded_model())] if exp.setup.adapt_epochs else []
    runs.append(("MIM's starting point" + (" (adapted here)" if exp.setup.adapt_epochs else ""),
                 base))
    rows = []
    for label, run in runs:
        result = run.record.get("result", {})
        epochs = [e for e in result.get("evals", []) if "epoch" in e]  # adaptation epochs
        kept = max(epochs, key=lambda e: e["accuracy"])["epoch"] if epochs else 0
        rows.append({"model": label, "architecture": exp.setup.arch, "weights": exp.setup.base,
                     "epochs kept": kept, "epochs run": len(epochs) - 1 if epochs else 0,
                     "training steps here": len(run.log), "seconds": result.get("seconds"),
                     "ID test accuracy": exp.evaluate(run, ("MSP",)).accuracy})
    return pd.DataFrame(rows)


def test_set_selection(exp: Experiment) -> str:
    """What choosing the adapted model's epoch on the ID *test* set is worth, measured from the
    stored adaptation: the kept epoch's accuracy against the epochs around it (one sentence)."""
    if not exp.setup.adapt_epochs:
        return "The starting classifier is used as loaded: no epoch was selected on test data."
    evals = [e for e in exp.base_model().record.get("result", {}).get("evals", [])
             if "epoch" in e and e["epoch"] > 0]
    if not evals:
        return "The adapted classifier's epochs were not recorded."
    kept = max(evals, key=lambda e: e["accuracy"])
    others = [e["accuracy"] for e in evals if e is not kept]
    gap = (kept["accuracy"] - max(others)) if others else 0.0
    return (f"The adaptation kept epoch {kept['epoch']} of {len(evals)}, the one with the best "
            f"ID *test* accuracy ({kept['accuracy']:.2%}): a selection on the test set. It "
            f"flatters that accuracy by about the gap to the best other epoch, {gap * 100:.2f} "
            "points here; MIM, its control and every baseline start from this same model, so "
            "their comparisons are not affected, only the starting accuracy read on its own.")


def num_classes(exp: Experiment) -> int:
    """The number of ID classes, known from the spec or from the stored per-class accuracy."""
    return known_num_classes(exp.setup.id_data) or len(per_class_accuracy(exp, exp.base_model()))
