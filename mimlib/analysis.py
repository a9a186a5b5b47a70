"""Computations behind the notebooks: tables of runs, sweeps, mixing statistics, embeddings.

Each function takes an :class:`~mimlib.experiment.Experiment` (so that heavy steps go through the
results store) and returns a tidy :class:`pandas.DataFrame` for the notebook to show.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .augment import PostMixAugment
from .data import ImageSet, denormalize, normalize
from .detectors import extract  # noqa: F401  (re-exported for the notebooks)
from .experiment import Evaluation, Experiment, ModelRun, Setup
from .mixing import multi_input_mixup
from .models import features_and_logits
from .store import Store


def evaluation_frame(evaluation: Evaluation, method: str | None = None) -> pd.DataFrame:
    """Rows (method, ood, auroc, aupr_in, aupr_out, fpr95) of one evaluation."""
    df = pd.DataFrame(evaluation.rows).rename(columns={"detector": "method"})
    if method is not None:
        df["method"] = method
    return df[["method", "ood", "auroc", "aupr_in", "aupr_out", "fpr95"]]


def table1(exp: Experiment, base: ModelRun, mim: ModelRun,
           detectors: Sequence[str]) -> pd.DataFrame:
    """The paper's Table 1 for one protocol: every detector on the base model, MSP after MIM."""
    baselines = evaluation_frame(exp.evaluate(base, tuple(detectors)))
    ours = evaluation_frame(exp.evaluate(mim, ("MSP",)), method="MIM")
    return pd.concat([baselines, ours], ignore_index=True)


def summary_row(exp: Experiment, run: ModelRun, **labels: Any) -> dict[str, Any]:
    """Mean MSP metrics over the OOD sets, per-set AUROC and ID accuracy of one model."""
    ev = exp.evaluate(run, ("MSP",))
    per_set = {f"auroc[{r['ood']}]": r["auroc"] for r in ev.rows}
    means = ev.record["result"]["means"]["MSP"]
    return {**labels, "mean_auroc": means["auroc"], "mean_aupr_out": means["aupr_out"],
            "mean_fpr95": means["fpr95"], "accuracy": ev.accuracy, **per_set}


def sweep(exp: Experiment, base: ModelRun, mim: dict[str, Any],
          variants: Iterable[dict[str, Any]], *, include_base: bool = True) -> pd.DataFrame:
    """MIM runs that differ from ``mim`` by each variant; one summary row per run."""
    variants = list(variants)
    rows = [summary_row(exp, base, variant="no fine-tuning")] if include_base else []
    for variant in variants:
        run = exp.mim_model(base, **{**mim, **variant})
        name = ", ".join(f"{k}={v}" for k, v in variant.items()) or "default"
        rows.append(summary_row(exp, run, variant=name, **variant))
    df = pd.DataFrame(rows)
    for key in {k for v in variants for k in v}:  # whole-number settings stay whole numbers
        values = [v[key] for v in variants if key in v]
        if all(isinstance(x, int) and not isinstance(x, bool) for x in values):
            df[key] = df[key].astype("Int64")  # the base row's missing value becomes <NA>
    return df


def across_setups(template: Experiment, setups: Iterable[tuple[str, Setup]],
                  mim: dict[str, Any]) -> pd.DataFrame:
    """For each named setup (on the template's store and profile): the base model and MIM,
    summarised (cross-architecture, seeds)."""
    rows = []
    for name, setup in setups:
        exp = template.derive(setup)
        base = exp.base_model()
        rows.append(summary_row(exp, base, setup=name, model="base"))
        rows.append(summary_row(exp, exp.mim_model(base, **mim), setup=name, model="MIM"))
    return pd.DataFrame(rows)


def oe_comparison(exp: Experiment, mim: dict[str, Any], oe_outliers: str, oe: dict[str, Any],
                  published_oe: bool) -> pd.DataFrame:
    """The paper's Table 2 for one ID set: MSP of the base model, MIM and OE fine-tuning (and
    the OE authors' own weights where they exist and ``published_oe`` is set), per OOD set."""
    base = exp.base_model()
    runs = [("MSP", exp, base), ("MIM", exp, exp.mim_model(base, **mim)),
            ("OE", exp, exp.oe_model(oe_outliers, base, **oe))]
    key = published_oe_key(exp.setup.id_data, exp.setup.arch)
    if published_oe and key:
        published = exp.derive(replace_setup(exp.setup, base=f"registry:{key}"))
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


# --------------------------------------------------------------------------- mixed images

@torch.no_grad()
def mixed_batches(images: ImageSet, ks: Sequence[int], n: int, *, augment: PostMixAugment | None,
                  seed: int = 0) -> dict[int, torch.Tensor]:
    """n mixed images (normalised) per k from the first images of a set, reproducibly."""
    x = normalize(images.images[: max(n, 1) * 4])
    out = {}
    for k in ks:
        gen = torch.Generator().manual_seed(seed + k)
        mixed = multi_input_mixup(x, k, generator=gen)[:n]
        out[k] = augment(mixed, generator=gen) if augment is not None else mixed
    return out


@torch.no_grad()
def msp_of(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Maximum softmax probability of normalised inputs (CPU)."""
    model.eval().cpu()
    return torch.cat([model(x[i:i + batch_size]).softmax(1).amax(1)
                      for i in range(0, len(x), batch_size)]).numpy()


def mixing_statistics(model: nn.Module, images: ImageSet, ks: Sequence[int], n: int = 512,
                      seed: int = 0) -> pd.DataFrame:
    """How pixels and the classifier's confidence change with k, without and with augmentation.

    Per k: the mean per-image pixel standard deviation (contrast), the mean absolute Laplacian
    (fine detail), the fraction of (near-)black pixels, and the mean MSP of the classifier.
    """
    rows = []
    for augmented in (False, True):
        augment = PostMixAugment(p=1.0) if augmented else None
        for k, x in mixed_batches(images, ks, n, augment=augment, seed=seed).items():
            pixels = denormalize(x).clamp(0, 1)
            gray = pixels.mean(1, keepdim=True)
            kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
            lap = torch.nn.functional.conv2d(gray, kernel).abs().mean().item()
            msp = msp_of(model, x)
            rows.append({"k": k, "augmented": augmented,
                         "pixel_std": pixels.std((1, 2, 3)).mean().item(),
                         "laplacian": lap, "black_fraction": (pixels.amax(1) < 0.02).float()
                         .mean().item(), "mean_msp": float(msp.mean()),
                         "msp_above_0.9": float((msp > 0.9).mean())})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- manifold

def penultimate_features(exp: Experiment, run: ModelRun, ks: Sequence[int], n: int = 300,
                         seed: int = 0) -> pd.DataFrame:
    """Features and MSP of ID test images (with labels), mixed images per k, and OOD sets."""
    model = run.model
    parts: list[tuple[str, str, torch.Tensor]] = []
    test = exp.id_test.subset(n, seed)
    for cls in range(test.num_classes):
        keep = test.labels == cls
        parts.append((f"ID: {test.classes[cls]}", "ID", normalize(test.images[keep])))
    for k, x in mixed_batches(exp.id_test, ks, n, augment=PostMixAugment(p=1.0),
                              seed=seed).items():
        parts.append((f"mixed k={k}", "mixed", x))
    for name, ood in exp.ood.items():
        parts.append((name, "OOD", normalize(ood.subset(n, seed).images)))
    frames = []
    model = model.eval().cpu()
    with torch.no_grad():
        for group, kind, x in parts:
            pairs = [features_and_logits(model, x[i:i + 512]) for i in range(0, len(x), 512)]
            z = torch.cat([features for features, _ in pairs])
            msp = torch.cat([logits for _, logits in pairs]).softmax(1).amax(1)
            frame = pd.DataFrame(z.numpy(), columns=[f"f{i}" for i in range(z.shape[1])])
            frame.insert(0, "msp", msp.numpy())
            frame.insert(0, "kind", kind)
            frame.insert(0, "group", group)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def embed_2d(features: pd.DataFrame, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D embedding of the feature columns by PCA, t-SNE, or UMAP (when installed)."""
    z = features.filter(regex=r"^f\d+$").to_numpy()
    z = (z - z.mean(0)) / (z.std(0) + 1e-8)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(z)
    if method == "tsne":
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        z = PCA(n_components=min(30, z.shape[1]), random_state=seed).fit_transform(z)
        return TSNE(n_components=2, init="pca", random_state=seed, perplexity=30).fit_transform(z)
    if method == "umap":
        import umap  # optional dependency

        return umap.UMAP(random_state=seed).fit_transform(z)
    raise ValueError(f"unknown embedding {method!r}; use pca, tsne or umap")


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- runtime

def runtime_table(store: Store) -> pd.DataFrame:
    """Wall time of every stored training run, of each detector's fit and scoring, and of each
    model's forward pass over the data (once, shared by the detectors scored from it)."""
    rows = []
    forwards: dict[str, dict[str, Any]] = {}
    for entry in store.entries():
        rec = entry.record
        result, config = rec.get("result", {}), rec.get("config", {})
        device = rec.get("environment", {}).get("device")
        if rec["kind"] in ("pretrain", "finetune"):
            rows.append({"what": config.get("method", "pretrain"),
                         "detail": config.get("arch") or _arch_of(config),
                         "steps": len(result.get("log", [])), "seconds": result.get("seconds"),
                         "device": device, "key": rec["key"]})
        elif rec["kind"] == "scores":
            for what, seconds in result.get("timings", {}).items():
                if what.startswith("forward"):
                    shared = forwards.setdefault(
                        json.dumps([config.get("model"), config.get("data"), seconds],
                                   sort_keys=True),
                        {"what": "forward", "model": config.get("model", {}), "detectors": 0,
                         "seconds": seconds, "device": device, "key": rec["key"]})
                    shared["detectors"] += 1
                    continue
                rows.append({"what": what, "detail": config.get("detector"), "steps": None,
                             "seconds": seconds, "device": device, "key": rec["key"]})
    for f in forwards.values():
        model = f.pop("model")
        f["detail"] = (f"{model.get('method', 'base')} {model.get('arch') or _arch_of(model)}, "
                       f"all sets, {f.pop('detectors')} detector(s)")
        rows.append({**f, "steps": None})
    df = pd.DataFrame(rows, columns=["what", "detail", "steps", "seconds", "device", "key"])
    return df.astype({"steps": "Int64"})


def runtime_summary(runtime: pd.DataFrame) -> pd.DataFrame:
    """The runtime table summed per kind of step (training runs per method and architecture,
    forward passes, each detector's fit and scoring), largest total first."""
    detail = runtime["detail"].where(runtime["what"] != "forward", "all sets")
    grouped = runtime.assign(detail=detail).groupby(["what", "detail"], sort=False)["seconds"]
    out = grouped.agg(runs="count", total="sum", mean="mean").reset_index()
    out = out.rename(columns={"total": "seconds", "mean": "seconds per run"})
    return out.sort_values("seconds", ascending=False, ignore_index=True)


def _arch_of(config: dict[str, Any]) -> str | None:
    base = config.get("base", {})
    while isinstance(base, dict) and "arch" not in base and "base" in base:
        base = base["base"]
    return base.get("arch") if isinstance(base, dict) else None


def replace_setup(setup: Setup, **changes: Any) -> Setup:
    """A copy of a setup with some fields changed (validated again)."""
    return dataclasses.replace(setup, **changes)


# --------------------------------------------------------------------------- quirks

#: Detectors whose scores each detector-side quirk changes.
QUIRK_DETECTORS = {"fit_split": ("Mahalanobis", "RMD", "ViM", "DICE", "KL-Matching"),
                   "mahalanobis_eps": ("Mahalanobis",),
                   "features_as_logits": ("Entropy", "Energy")}


def quirk_effects(template: Experiment, base: ModelRun, mim: dict[str, Any]) -> pd.DataFrame:
    """Each quirk of the authors' code applied alone to the corrected protocol, and its effect.

    Training quirks change the MIM run (effect on its mean MSP AUROC); detector quirks change
    the baselines (effect on each affected detector's mean AUROC, on the base model).
    """
    from .protocol import QUIRKS, protocol_settings

    corrected = protocol_settings("corrected", template.setup.id_data)
    faithful = protocol_settings("faithful", template.setup.id_data)
    exp = template.derive(replace_setup(template.setup, protocol="corrected"))
    reference = summary_row(exp, exp.mim_model(base, **mim))["mean_auroc"]
    rows = []
    for quirk in QUIRKS:
        field = quirk.setting
        if field == "seed":
            rows.append(_quirk_row(quirk, "not measurable: the authors' augmentation coin is "
                                   "unseeded (see the seeds chapter for run-to-run spread)"))
            continue
        if field in ("shuffle", "bn_mode", "aug_p", "aug_quantize"):
            value = getattr(faithful, field)
            run = exp.mim_model(base, **{**mim, field: value})
            with_quirk = summary_row(exp, run)["mean_auroc"]
            rows.append(_quirk_row(quirk, "MIM, mean AUROC (MSP)", reference, with_quirk,
                                   f"{field}={value!r}"))
            continue
        changed = dataclasses.replace(
            corrected, fit_split=faithful.fit_split if field == "fit_split" else
            corrected.fit_split, detector_options=dataclasses.replace(
                corrected.detector_options, **_detector_change(field, faithful)))
        names = QUIRK_DETECTORS[field]
        before = exp.evaluate(base, names).record["result"]["means"]
        quirky = exp.derive(settings=changed).evaluate(base, names)
        after = quirky.record["result"]["means"]
        change = (f"fit_split={faithful.fit_split!r}" if field == "fit_split" else
                  ", ".join(f"{k}={v!r}" for k, v in _detector_change(field, faithful).items()))
        for name in names:
            rows.append(_quirk_row(quirk, f"{name} on the base model, mean AUROC",
                                   before[name]["auroc"], after[name]["auroc"], change))
    return pd.DataFrame(rows)


def quirk_list() -> pd.DataFrame:
    """Every quirk of the authors' code, once: what the code does and what ``corrected`` does."""
    from .protocol import QUIRKS

    return pd.DataFrame([{"quirk": q.setting, "authors' code": q.faithful,
                          "corrected": q.corrected} for q in QUIRKS])


def _detector_change(field: str, faithful: Any) -> dict[str, Any]:
    if field == "mahalanobis_eps":
        return {"mahalanobis_eps": faithful.detector_options.mahalanobis_eps or 0.002}
    if field == "features_as_logits":
        return {"features_as_logits": ("Entropy", "Energy")}
    return {}


def _quirk_row(quirk: Any, measure: str, corrected: float | None = None,
               with_quirk: float | None = None, change: str = "") -> dict[str, Any]:
    effect = None if corrected is None or with_quirk is None else with_quirk - corrected
    return {"quirk": quirk.setting, "measured on": measure, "change": change,
            "corrected value": corrected, "with the quirk": with_quirk, "effect": effect}


# --------------------------------------------------------------------------- tables for the book

def paper_id(id_data: str, aliases: dict[str, str] | None = None) -> str | None:
    """The paper's name for an ID set (cifar10 / cifar100), or None when the paper has none.

    ``aliases`` maps other specs to a paper set, e.g. the JPEG CIFAR-10 folder to ``cifar10``
    (comparable only roughly: JPEG pixels).
    """
    if aliases and id_data in aliases:
        return aliases[id_data]
    return id_data if id_data in ("cifar10", "cifar100") else None


def wide_table(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Methods as rows, OOD sets (and the average) as columns, plus the paper's average and Δ."""
    wide = rows.pivot_table(index="method", columns="ood", values=metric, sort=False)
    order = [o for o in rows["ood"].unique() if o != "average"] + ["average"]
    wide = wide[order].rename(columns=lambda c: c.removeprefix("synthetic_"))
    paper_col = "paper_auroc" if metric == "auroc" else "paper_aupr"
    if paper_col in rows:
        avg = rows[rows["ood"] == "average"].set_index("method")[paper_col]
        wide["paper average"] = avg.reindex(wide.index)
        wide["Δ average"] = wide["average"] - wide["paper average"]
    return wide.reset_index()


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
            means = df.set_index("method")[column].dropna()
            baselines = means.drop("MIM", errors="ignore")
            best = baselines.idxmax() if len(baselines) else None
            row[f"MSP{source}"] = means.get("MSP", np.nan)
            row[f"best baseline{source}"] = f"{best} {baselines[best]:.4f}" if best else "—"
            row[f"MIM{source}"] = means.get("MIM", np.nan)
            rank = (means > means["MIM"]).sum() + 1 if "MIM" in means else None
            row[f"MIM rank{source}"] = f"{rank} of {len(means)}" if rank else "—"
        rows.append(row)
    order = ["id_data", "protocol", "MSP", "MSP (paper)", "best baseline", "best baseline (paper)",
             "MIM", "MIM (paper)", "MIM rank", "MIM rank (paper)"]
    return pd.DataFrame(rows, columns=order)


def slug(text: str) -> str:
    """A label-safe version of a data-set spec, for table and figure names."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[-40:] or "x"


def published_oe_key(id_data: str, arch: str) -> str | None:
    """The registry key of the OE authors' own OE-tuned weights, where they exist."""
    if arch == "wrn40_2" and id_data in ("cifar10", "cifar100"):
        return f"wrn-40-2/{id_data}/oe"
    return None


def architecture_setups(setup: Setup, archs: Sequence[str],
                        changes: dict[str, Any]) -> list[tuple[str, Setup]]:
    """One setup per architecture; published weights exist for WRN-40-2 only."""
    out = []
    for arch in archs:
        changed = {**changes, "arch": arch}
        base = changed.get("base", setup.base)
        if base == "published" and arch != "wrn40_2":
            changed["base"] = "pretrain"
        out.append((arch, replace_setup(setup, **changed)))
    return out


def _benchmark_runs(folder: str) -> list[dict]:
    return [json.loads(file.read_text()) for file in sorted(Path(folder).glob("*.json"))]


def benchmark_table(folder: str) -> pd.DataFrame:
    """Every benchmark JSON in a folder (benchmarks/run.py), one block of rows per machine."""
    runs = _benchmark_runs(folder)
    if not runs:
        return pd.DataFrame([{"machine": "none yet", "measure": "run: python -m benchmarks.run",
                              "value": np.nan, "unit": "", "target": "", "ok": ""}])
    frames = []
    for data in runs:
        frame = pd.DataFrame(data["rows"])
        frame.insert(0, "machine", data.get("device", "?"))
        frame["ok"] = frame["ok"].map({True: "yes", False: "no"}).fillna("")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _short_git(revision: str | None) -> str:
    """A git revision as captions show it: eight hex digits, and whether the tree was dirty."""
    if not revision:
        return "?"
    return revision[:8] + ("-dirty" if revision.endswith("-dirty") else "")


def benchmark_provenance(folder: str) -> str:
    """What produced the benchmark table: each machine's run (threads, torch, git revision,
    date), since those numbers come from committed JSON, not from the book's profile."""
    runs = [f"{data.get('device', '?')} ({data.get('threads', '?')} threads, torch "
            f"{data.get('torch', '?')}, git {_short_git(data.get('git'))}, "
            f"{str(data.get('created', '?'))[:10]})" for data in _benchmark_runs(folder)]
    return "python -m benchmarks.run on " + "; ".join(runs) if runs else "no benchmark run yet"


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
                "nearly the uniform distribution for every input, so its AUROC is about 0.5. "
                "Fine-tuning in eval mode (frozen batch-norm statistics, the authors' setting) "
                "does this at learning rates well above the paper's 1e-4.")
    return notes


# --------------------------------------------------------------------------- committed GPU runs

def gpu_summary(folder: str) -> dict[str, Any] | None:
    """The summary of a GPU run of ``scripts/gpu_offline_cifar10.py`` committed to the
    repository, or None when there is none yet."""
    path = Path(folder) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def gpu_tables(summary: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean AUROC per method and protocol, and every (method, OOD set) row, of a GPU run."""
    means, rows = [], []
    for protocol, res in summary["protocols"].items():
        for method, auroc in res["mean_auroc"].items():
            means.append({"protocol": protocol, "method": method, "mean AUROC": auroc})
        for row in res["rows"]:
            rows.append({"protocol": protocol, "method": row["detector"], "ood": row["ood"],
                         "auroc": row["auroc"], "aupr_in": row["aupr_in"],
                         "aupr_out": row["aupr_out"], "fpr95": row["fpr95"]})
    wide = pd.DataFrame(means).pivot_table(index="method", columns="protocol",
                                           values="mean AUROC", sort=False).reset_index()
    return wide, pd.DataFrame(rows)


def gpu_overview(summary: dict[str, Any]) -> pd.DataFrame:
    """Per protocol: ID accuracy before and after MIM, mean AUROC of MSP and MIM, the peak of
    the curve evaluated during fine-tuning, and the wall times."""
    rows = []
    for protocol, res in summary["protocols"].items():
        curve = pd.DataFrame(res["mim_curve"])
        peak = curve.loc[curve["mean_auroc"].idxmax()] if len(curve) else None
        rows.append({"protocol": protocol, "accuracy before": res["base_accuracy"],
                     "accuracy after": res["mim_accuracy"],
                     "MSP mean AUROC": res["mean_auroc"]["MSP"],
                     "MIM mean AUROC": res["mean_auroc"]["MIM"],
                     "peak during fine-tuning": np.nan if peak is None else peak["mean_auroc"],
                     "at step": np.nan if peak is None else int(peak["step"]),
                     "pretraining s": res["pretrain_seconds"], "MIM s": res["mim_seconds"]})
    return pd.DataFrame(rows)


def gpu_provenance(summary: dict[str, Any]) -> str:
    """What produced a committed GPU run: device, git revision, torch, architecture, epochs."""
    env = summary["environment"]
    return (f"GPU run on {env['device']}, git {_short_git(env['git'])}, torch "
            f"{env['versions']['torch']}, {summary['arch']}, {summary['epochs']} pretraining "
            "epochs")


def gpu_warnings(summary: dict[str, Any], recipe_epochs: int = 100,
                 published_accuracy: float = 0.9484) -> list[str]:
    """What a reader of a GPU run must not miss: protocols the call did not finish, and a base
    classifier pretrained for fewer epochs than the OE recipe's (the paper's checkpoint)."""
    notes = [f"The GPU call ended before the {protocol} protocol finished: its rows are missing."
             for protocol in summary.get("unfinished", [])]
    if summary["epochs"] < recipe_epochs and summary["protocols"]:
        accuracy = next(iter(summary["protocols"].values()))["base_accuracy"]
        notes.append(f"The base classifier was pretrained for {summary['epochs']} of the OE "
                     f"recipe's {recipe_epochs} epochs (what the call's time allowed): its test "
                     f"accuracy is {accuracy:.2%}, against {published_accuracy:.2%} for the "
                     "published checkpoint the paper starts from, so these numbers describe a "
                     "weaker classifier than the paper's.")
    return notes


def gpu_plan() -> pd.DataFrame:
    """What the offline GPU run measures (shown until its results are committed)."""
    return pd.DataFrame([
        {"step": "pretraining", "what": "WRN-40-2 on the JPEG CIFAR-10 (50,000 images), OE "
         "recipe, as many epochs as fit in the time budget (reported)"},
        {"step": "fine-tuning", "what": "MIM for one epoch, k = 10, lr 1e-4, faithful and "
         "corrected protocol, mean AUROC every 30 steps"},
        {"step": "evaluation", "what": "MSP, the nine other baselines and MIM on Tiny-ImageNet "
         "crop and resize (rebuilt from its 10,000 test images) and the OE noise sets"},
        {"step": "benchmark", "what": "benchmarks/run.py on the same GPU"},
    ])
