"""Readers' labels: what the book's figures and tables call each data set, model and protocol.

Each name lives next to what it names: data sets in :mod:`mimlib.companion.results.catalog` (store
names, and the files a profile's specs read, known by their checksum), architectures and
published weights in :mod:`mimlib.models.registry` (``ARCHITECTURE_NAMES``,
``PublishedWeights.display``), protocols in :data:`mimlib.companion.results.protocol.PROTOCOL_NAMES`.
This module applies them: to a table's headers and label cells (:func:`readers_table`, which the
notebooks' tables go through) and to any one label (:func:`readers_label`, which
:mod:`mimlib.companion.analysis.plots` uses for titles, legends and tick labels).

Specs, pins and registry keys stay where a result is traced: the provenance line of every table
and figure, and the exported CSV files, whose comment line is that provenance and whose columns
keep the machine names (``auroc[tinyimagenet_crop]``, ``id_data``) that code reading them uses.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from ..results.catalog import spec_display
from ..results.protocol import PROTOCOL_NAMES
from ...specs import BaseSpec

#: Metrics as column headers name them (``auroc[SET]`` becomes ``AUROC: <set's name>``).
METRIC_NAMES = {"auroc": "AUROC", "aupr_in": "AUPR-IN", "aupr_out": "AUPR-OUT",
                "fpr95": "FPR95"}

#: Headers that name what a column holds in a machine's words.
HEADER_NAMES = {"id_data": "ID data", "ood": "OOD set"}

#: Columns whose cells are starting points (``Setup.base``: pretrain, published, registry:KEY).
WEIGHTS_COLUMNS = ("weights", "base")


def readers_label(text: Any) -> Any:
    """One label as readers see it: a data set (store name or spec), an architecture, published
    weights (``registry:KEY``) or a protocol by its display name, ``METRIC[SET]`` as
    ``METRIC: set``, each part of ``A / B`` on its own; any other text (and any non-text)
    comes back unchanged."""
    from ...models import ARCHITECTURE_NAMES, weights_display

    if not isinstance(text, str):
        return text
    if " / " in text:
        return " / ".join(readers_label(part) for part in text.split(" / "))
    metric = re.fullmatch(r"(\w+)\[(.+)\]", text)
    if metric:
        return f"{METRIC_NAMES.get(metric[1], metric[1])}: {readers_label(metric[2])}"
    if text in PROTOCOL_NAMES:
        return PROTOCOL_NAMES[text]
    if text in ARCHITECTURE_NAMES:
        return ARCHITECTURE_NAMES[text]
    base = BaseSpec.find(text)
    if base is not None and base.kind in ("registry", "checkpoint"):
        return weights_display(base)
    return spec_display(text)


def readers_table(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of a table for the page: headers and text cells through :func:`readers_label`
    (cells of a weights column through :func:`mimlib.models.weights_display`), numbers as
    they are."""
    from ...models import weights_display

    out = df.copy()
    for i, column in enumerate(df.columns):
        values = out.iloc[:, i]
        if not (values.dtype == object or pd.api.types.is_string_dtype(values.dtype)):
            continue
        name = weights_display if column in WEIGHTS_COLUMNS else readers_label
        out.iloc[:, i] = [name(v) if isinstance(v, str) else v for v in values]
    out.columns = [HEADER_NAMES.get(c, readers_label(c)) if isinstance(c, str) else c
                   for c in df.columns]
    return out
