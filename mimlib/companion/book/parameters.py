"""Every page parameter's check, by name (one meaning per name everywhere): the values alone,
no file opened, so a profile's parameters are valid or not whether or not its data are here."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ...checks import is_number, is_whole
from ..analysis.claims import columns_from
from ...detectors import check_detectors
from ...errors import ConfigError
from ..results.setup import Setup
from ...models import ARCHITECTURES
from ..results.protocol import PROTOCOLS
from ...specs import ID_SETS, DataSpec
from ...train_config import BN_MODES, MIMConfig, OEConfig


MIM_FIELDS = {f.name for f in dataclasses.fields(MIMConfig)} - {"device", "eval_every"}


def check_parameters(notebook: str | None, params: dict[str, Any]) -> None:
    """Check every parameter of a notebook run (by name; one meaning per name everywhere).

    The values alone are checked: no file is opened, so a profile's parameters are valid or not
    whether or not its data are on this machine (:meth:`Setup.preflight` checks those)."""
    where = f" of {notebook}" if notebook else ""
    for name, value in params.items():
        check = CHECKS.get(name)
        if check is None:
            raise ConfigError(f"unknown parameter {name!r}{where}")
        try:
            check(value)
        except ConfigError as err:
            raise ConfigError(f"parameter {name!r}{where}: {err}") from None


def _setup(value: Any) -> None:
    known = {f.name for f in dataclasses.fields(Setup)}
    _fields("setup", value, known)
    Setup(**value)


def _setup_changes(value: Any) -> None:
    _fields("arch_setup", value, {f.name for f in dataclasses.fields(Setup)})


def _mim(value: Any) -> None:
    _fields("mim", value, MIM_FIELDS)
    MIMConfig(device="cpu", **value)


def _oe(value: Any) -> None:
    known = {f.name for f in dataclasses.fields(OEConfig)} - {"device", "eval_every"}
    _fields("oe", value, known)
    OEConfig(device="cpu", **value)


def _fields(name: str, value: Any, known: set[str]) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"unknown field(s) {unknown}; known: {sorted(known)}")


def _list_of(kind: str, check: Callable[[Any], bool]) -> Callable[[Any], None]:
    def checker(value: Any) -> None:
        if not isinstance(value, list) or not value or not all(check(v) for v in value):
            raise ConfigError(f"must be a non-empty list of {kind}, got {value!r}")
    return checker


def _one(kind: str, check: Callable[[Any], bool]) -> Callable[[Any], None]:
    def checker(value: Any) -> None:
        if not check(value):
            raise ConfigError(f"must be {kind}, got {value!r}")
    return checker


def _is_spec(role: str) -> Callable[[Any], bool]:
    """Whether a value is a data spec that ``role`` (id, ood) accepts."""
    def check(v: Any) -> bool:
        try:
            DataSpec.parse(v, role)
        except ConfigError:
            return False
        return True
    return check


_id_spec, _ood_spec = _is_spec("id"), _is_spec("ood")


def _detectors(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"must be a non-empty list of detector names, got {value!r}")
    check_detectors(value)


def _columns(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"must be a non-empty list of claims columns, got {value!r}")
    for column in columns_from(value):
        _mim(column.overrides)


CHECKS: dict[str, Callable[[Any], None]] = {
    "profile": _one("a profile name", lambda v: isinstance(v, str) and bool(v)),
    "setup": _setup,
    "mim": _mim,
    "store": _one("a folder path or None", lambda v: v is None or isinstance(v, str)),
    "ks": _list_of("whole numbers >= 1", is_whole),
    "seeds": _list_of("whole numbers >= 0", lambda v: is_whole(v, 0)),
    "ablation_seeds": _list_of("whole numbers >= 0", lambda v: is_whole(v, 0)),
    "steps_grid": _list_of("whole numbers >= 1 or None (one whole epoch)",
                           lambda v: v is None or is_whole(v)),
    "n_gallery": _one("a whole number >= 1", is_whole),
    "n_stats": _one("a whole number >= 1", is_whole),
    "n_points": _one("a whole number >= 1", is_whole),
    "eval_every": _one("a whole number >= 1", is_whole),
    "ps": _list_of("probabilities in [0, 1]", lambda v: is_number(v) and 0 <= v <= 1),
    "lrs": _list_of("numbers > 0", lambda v: is_number(v) and v > 0),
    "lams": _list_of("numbers >= 0", lambda v: is_number(v) and v >= 0),
    "alphas": _list_of("numbers > 0", lambda v: is_number(v) and v > 0),
    "id_datasets": _list_of(f"ID data sets ({list(ID_SETS)} or folder:PATH)", _id_spec),
    "protocols": _list_of(f"protocols {list(PROTOCOLS)}", lambda v: v in PROTOCOLS),
    "detectors": _detectors,
    "paper_ids": _one("a mapping from ID specs to cifar10 / cifar100",
                      lambda v: isinstance(v, dict) and all(
                          x in ("cifar10", "cifar100") for x in v.values())),
    "oe_outliers": _one("an auxiliary outlier set (tinyimages300k, synthetic_clutter, "
                        "crop:PATH...) or None (none available)",
                        lambda v: v is None or _ood_spec(v)),
    "oe": _oe,
    "published_oe": _one("true or false", lambda v: isinstance(v, bool)),
    "embeddings": _list_of("embeddings (pca, tsne, umap)", lambda v: v in ("pca", "tsne", "umap")),
    "ablation": _mim,
    "arch_mim": _mim,
    "archs": _list_of(f"architectures {sorted(ARCHITECTURES)}", lambda v: v in ARCHITECTURES),
    "arch_setup": _setup_changes,
    "benchmark": _one("a folder path", lambda v: isinstance(v, str)),
    "gpu_results": _one("a folder path", lambda v: isinstance(v, str)),
    "columns": _columns,
    "precision_seeds": _one("a list of whole numbers >= 0 (empty: no comparison)",
                            lambda v: isinstance(v, list) and all(is_whole(x, 0) for x in v)),
    "bn_modes": _list_of(f"batch-norm modes {list(BN_MODES)}", lambda v: v in BN_MODES),
}
