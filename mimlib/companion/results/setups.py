"""The setups one page runs, from its parameters: its own, one per ID set, one per architecture.

Both the run's preparation (:mod:`mimlib.companion.run.needs`, :mod:`mimlib.companion.run.executors`) and the chapters
(:mod:`mimlib.companion.analysis`) expand a page's setup this way, so it lives below both.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from ...errors import ConfigError
from .setup import Setup
from ...models import PUBLISHED
from ...specs import BaseSpec


def setups_of(params: dict[str, Any]) -> list[Setup]:
    """Every setup a notebook's parameters make it run: its own, each ID set, each arch."""
    setup = Setup(**params["setup"])
    setups = [setup] + [dataclasses.replace(setup, id_data=i)
                        for i in params.get("id_datasets") or ()]
    if params.get("archs"):
        setups += [s for _, s in architecture_setups(setup, params["archs"],
                                                     params.get("arch_setup") or {})]
    return list(dict.fromkeys(setups))


def architecture_setups(setup: Setup, archs: Sequence[str],
                        changes: dict[str, Any]) -> list[tuple[str, Setup]]:
    """One setup per architecture. A published base follows the architecture: the paper's
    weights exist for WRN-40-2 only (others are pretrained here), and ``registry:ARCH/DATA``
    becomes the registry's entry for each architecture on the same data."""
    out = []
    for arch in archs:
        changed = {**changes, "arch": arch}
        base = BaseSpec.parse(changed.get("base", setup.base))
        if base.kind == "published" and arch != "wrn40_2":
            changed["base"] = "pretrain"
        elif base.kind == "registry" and "/" in base.value:
            data = base.value.split("/", 1)[1]
            key = f"{arch}/{data}"
            if key not in PUBLISHED:
                raise ConfigError(f"no published {arch} weights for {data} in mimlib's registry "
                                  f"({sorted(PUBLISHED)}); give arch_setup: {{base: pretrain}} "
                                  "to train them here")
            changed["base"] = BaseSpec("registry", key).text
        if changed.get("base") == "pretrain":
            changed["adapt_epochs"] = 0  # a model trained here needs no adaptation
        out.append((arch, dataclasses.replace(setup, **changed)))
    return out
