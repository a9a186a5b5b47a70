"""The store-key schema of training and evaluation runs, with every legacy form kept so that
committed entries are found: runs computed before a setting existed are keyed as they were
(fp32 contiguous runs as ``amp=True, channels_last=True``; batch-norm modes by their old
names)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ... import pins
from ...device import planned_device, planned_precision, resolve_layout
from ...train_config import LEGACY_BN_MODES
from .setup import Setup


def train_data_key(setup: Setup) -> dict[str, Any]:
    """What decides the training data: the ID set, its subset size and the subset seed."""
    return {"id_data": pins.identity(setup.id_spec), "train_limit": setup.train_limit,
            "seed": setup.seed}


def eval_data_key(setup: Setup) -> dict[str, Any]:
    """What decides the evaluation data (the fit set may be the training set)."""
    return {"id_data": pins.identity(setup.id_spec), "train_limit": setup.train_limit,
            "test_limit": setup.test_limit,
            "ood_sets": [pins.identity(spec) for spec in setup.ood_specs],
            "ood_limit": setup.ood_limit, "seed": setup.seed}


def numerics_key(setup: Setup) -> dict[str, Any]:
    """The device, precision and layout a setup's training runs use."""
    return {"device": setup.device, "precision": setup.precision, "layout": setup.layout}


def precision_key(setup: Setup) -> dict[str, Any]:
    """How evaluations ran, in keys where it is not fp32 and contiguous (entries stored before
    these settings existed, all computed so, keep their keys)."""
    device = planned_device(setup.device)
    key = {}
    if setup.eval_precision != "fp32":
        key["eval_precision"] = setup.eval_precision
    if resolve_layout(device, setup.eval_layout) != "contiguous":
        key["eval_layout"] = resolve_layout(device, setup.eval_layout)
    return key


#: The batch-norm modes as keys stored before there were three name them.
_BN_KEYS = {mode: legacy for legacy, mode in LEGACY_BN_MODES.items()}


def train_key(cfg: Any) -> dict[str, Any]:
    """The training configuration without fields that do not change the weights.

    Keys keep the form they had before precision, layout and the third batch-norm mode
    existed, so that committed entries stay found: every one was computed in fp32 and the
    contiguous layout on a CPU and stored with ``amp`` and ``channels_last`` true (which acted
    only on CUDA), and batch norm ``eval`` / ``train`` for frozen / mixed-stats. Any other
    precision or layout is named in the key.
    """
    skip = {"device", "check_every", "compile", "eval_every", "precision", "layout"}
    key = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}
    key["bn_mode"] = _BN_KEYS.get(cfg.bn_mode, cfg.bn_mode)
    key.update(amp=True, channels_last=True)
    device = planned_device(cfg.device)
    numerics = {"precision": planned_precision(device, cfg.precision),
                "layout": resolve_layout(device, cfg.layout)}
    if numerics != {"precision": "fp32", "layout": "contiguous"}:
        key["numerics"] = numerics
    return key
