"""The quirks of the authors' code: their list, and each one's measured effect."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from ...detectors import DETECTORS, FITTED_DETECTORS, TABLE1_DETECTORS
from ..results.experiment import Experiment
from ..results.runs import ModelRun
from ..results.protocol import DESIGN_CHOICES, QUIRKS, protocol_settings
from ...train_config import BN_MODES
from .tables import CONTROL, replace_setup, summary_row, sweep_bn_modes

#: The detectors the authors' CIFAR-100 notebook hands the features as logits.
_FEATURES_AS_LOGITS = protocol_settings("faithful", "cifar100").detector_options.features_as_logits
#: The order of the fit-split quirk's rows in the committed report; other fitted detectors follow.
_FIT_SPLIT_ROWS = ("Mahalanobis", "RMD", "ViM", "DICE", "KL-Matching")

#: Detectors whose scores each detector-side quirk changes, read off the detector table.
QUIRK_DETECTORS = {
    "fit_split": tuple(sorted(FITTED_DETECTORS, key=lambda name: _FIT_SPLIT_ROWS.index(name)
                              if name in _FIT_SPLIT_ROWS else len(_FIT_SPLIT_ROWS))),
    "mahalanobis_eps": tuple(name for name in TABLE1_DETECTORS
                             if DETECTORS[name].depends_on("mahalanobis_eps")),
    "features_as_logits": _FEATURES_AS_LOGITS}


def quirk_effects(template: Experiment, base: ModelRun, mim: dict[str, Any]) -> pd.DataFrame:
    """Each quirk of the authors' code applied alone to the corrected protocol, and its effect.

    Training quirks change the MIM run (effect on its mean MSP AUROC); detector quirks change
    the baselines (effect on each affected detector's mean AUROC, on the base model).
    """
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
        if field in ("shuffle", "aug_p", "aug_quantize"):
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
    return pd.DataFrame([{"quirk": q.setting, "authors' code": q.faithful,
                          "corrected": q.corrected} for q in QUIRKS])


def design_choices() -> pd.DataFrame:
    """Settings that change the method itself (not quirks): the authors' value, which both
    protocols keep, the alternatives measured as a sensitivity, and why."""
    return pd.DataFrame([{"setting": d.setting, "authors' code (both protocols)": d.authors,
                          "measured beside it": d.alternatives, "why it is no quirk": d.why}
                         for d in DESIGN_CHOICES])


def bn_mode_effect(exp: Experiment, base: ModelRun, mim: dict[str, Any],
                   seeds: list[int]) -> pd.DataFrame:
    """The batch-norm design choice measured: MIM with ``mim`` in each mode of
    :data:`~mimlib.train_config.BN_MODES` and its control (the same fine-tuning without mixed images,
    which id-stats and mixed-stats share: both are train mode on the ID batch), per OOD group
    and ID accuracy, the mean over ``seeds``, MIM's standard deviation and its change from the
    control."""
    runs = sweep_bn_modes(exp, base, mim, [{}], seeds=seeds, bn_modes=BN_MODES)
    runs = runs[runs.variant != "no fine-tuning"]
    control = runs.variant.str.startswith(CONTROL)
    columns = [*[c for c in runs if c.startswith("mean_auroc_")], "accuracy"]
    mim_runs = runs[~control].groupby("bn_mode", sort=False)
    controls = runs[control].groupby("bn_mode", sort=False)[columns].mean()
    table = pd.DataFrame({"bn_mode": list(mim_runs.groups), "seeds": mim_runs.size().to_numpy()})
    for column in columns:
        mean = mim_runs[column].mean()
        table[column] = mean.to_numpy()
        table[f"{column}_sd"] = mim_runs[column].std(ddof=1).to_numpy()
        table[f"{column}_control"] = controls[column].reindex(mean.index).to_numpy()
        table[f"{column}_vs_control"] = table[column] - table[f"{column}_control"]
    return table


def _detector_change(field: str, faithful: Any) -> dict[str, Any]:
    if field == "mahalanobis_eps":
        return {"mahalanobis_eps": faithful.detector_options.mahalanobis_eps or 0.002}
    if field == "features_as_logits":
        return {"features_as_logits": _FEATURES_AS_LOGITS}
    return {}


def _quirk_row(quirk: Any, measure: str, corrected: float | None = None,
               with_quirk: float | None = None, change: str = "") -> dict[str, Any]:
    effect = None if corrected is None or with_quirk is None else with_quirk - corrected
    return {"quirk": quirk.setting, "measured on": measure, "change": change,
            "corrected value": corrected, "with the quirk": with_quirk, "effect": effect}

