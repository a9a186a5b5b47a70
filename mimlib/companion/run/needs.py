"""What the chosen notebooks will need from outside, known from their parameters alone.

``mimlib reproduce`` and ``mimlib run`` ask this before any kernel starts: every data set, OE
outlier set and published checkpoint that any setup of any chosen notebook names (its own
setup, one per ``id_datasets`` entry, one per architecture of ``archs``), so a run either fetches
everything once or stops with one list of what is missing, instead of failing notebook after
notebook. Local paths (``folder:``, ``crop:``, ``mnist:PATH``) are checked too; setups whose
pinned data are absent read committed results and need nothing.
"""

from __future__ import annotations

from typing import Any

from ... import data as D
from ... import data_checks, fetch
from ...checkpoints import weights_item
from ...device import resolve_device
from ...errors import DataError, MimlibError
from ...models import published_oe_weights
from ..results.setups import setups_of
from ...specs import DataSpec


def items_of(params: dict[str, Any]) -> tuple[list[tuple[fetch.Item, bool]], list[str]]:
    """The remote items one notebook's parameters need, each with whether its setup allows
    downloads, and the problems with the local paths they name."""
    items: list[tuple[fetch.Item, bool]] = []
    problems: list[str] = []
    for setup in setups_of(params):
        options = D.DataOptions(setup.data_root, setup.download)
        specs = [(setup.id_spec, "id"), *((s, "ood") for s in setup.ood_specs)]
        if params.get("oe_outliers"):
            specs.append((DataSpec.parse(params["oe_outliers"], "ood"), "ood"))
        if setup.results_only:
            # pinned data are absent, so stored results are read and nothing is fetched; a
            # path without a pin is named in store keys by its files, which must be there
            specs = [(spec, role) for spec, role in specs if spec.reads_files and not spec.pin]
        remote: list[fetch.Item] = []
        for spec, role in specs:
            found = fetch.data_items(spec.target, setup.data_root)
            if found:
                remote += found
                continue
            try:  # a local path, a noise or an embedded set
                data_checks.check_available(spec, options, role=role)
            except MimlibError as err:
                problems.append(f"- {spec.text}: {err}")
        if setup.results_only:
            continue
        try:  # the data are here, so the notebook may compute: on the device it names
            resolve_device(setup.device)
        except MimlibError as err:
            problems.append(f"- device {setup.device}: {err}")
        try:
            setup.check_checkpoint()
        except MimlibError as err:
            problems.append(f"- {setup.base}: {err}")
        keys = [setup.published_key] if setup.published_key is not None else []
        oe = published_oe_weights(setup.id_data, setup.arch)
        if params.get("published_oe") and oe:
            keys.append(oe.key)
        remote += [weights_item(key, setup.weights_folder) for key in keys]
        items += [(item, setup.download) for item in remote]
    return items, problems


def prepare(planned: list[dict[str, Any]], *, progress: bool = True) -> None:
    """Everything the planned notebooks need, in place, before any of them starts: what is
    missing is fetched when downloads are allowed; otherwise (or for a local path that is not
    there) one DataError lists each missing item with its URL, place, checksum and size, and
    nothing is fetched."""
    items: dict[fetch.Item, bool] = {}
    problems: list[str] = []
    for params in planned:
        more, bad = items_of(params)
        for item, allowed in more:
            items[item] = items.get(item, True) and allowed
        problems += bad
    absent = fetch.missing([i for i, allowed in items.items() if not allowed])
    if problems or absent:
        raise DataError("this run needs data that is not in place" + (
            " and downloads are switched off for it" if absent else "") + ":\n"
            + "\n".join([*dict.fromkeys(problems), *(i.describe(p) for i, p in absent)])
            + "\nPut each file where the list says (archives are extracted on the next run), "
            "or allow downloads (setup download: true); nothing was fetched or run.")
    fetch.ensure([i for i, allowed in items.items() if allowed], download=True,
                 progress=progress)
