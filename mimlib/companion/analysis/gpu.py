"""The prepared GPU run's committed summary, as tables and warnings for the offline chapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .runtime import short_git


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
    return (f"GPU run on {env['device']}, git {short_git(env['git'])}, torch "
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

