"""The command under every table and figure that re-runs the page it came from.

Two forms, both run from the project's root and both exact: ``mimlib run PAGE --profile NAME``
with a ``-p NAME VALUE`` for each parameter in which the page's run differs from what that
profile gives the page, and the same through papermill alone on the template
(``mimlib parameters ... > params.yml && papermill notebooks/PAGE.ipynb out.ipynb -f
params.yml``), which needs no executed page: a fresh clone has none until ``mimlib reproduce``.

The page is the one the template tells ``start()`` (``page=``), which every template of
``notebooks/`` does, so a page is never guessed from its parameters.
"""

from __future__ import annotations

import ast
import functools
import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from .profiles import load_profile, parse_value, profile_names, profile_parameters

#: What the papermill form calls the parameters file and the executed copy.
PARAMS_FILE = "params.yml"
OUT_FILE = "out.ipynb"

_MISSING = object()


@functools.lru_cache(maxsize=4)
def _templates(folder: str) -> dict[str, dict[str, Any]]:
    """Each template's parameters and their defaults (``_MISSING`` where one is not plain
    data), read from its parameters cell without running it."""
    import papermill as pm  # imported when templates are read: seconds of start-up

    out = {}
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        defaults = {}
        for name, info in pm.inspect_notebook(str(path)).items():
            try:
                defaults[name] = ast.literal_eval(info["default"])
            except (ValueError, SyntaxError):
                defaults[name] = _MISSING
        out[path.stem] = defaults
    return out


def overrides(page: str, profile: str, params: dict[str, Any],
              root: Path | None = None) -> list[tuple[str, str]]:
    """The ``-p NAME VALUE`` pairs that turn what ``profile`` gives ``page`` (its values on the
    template's defaults) into ``params``: a changed field of a mapping that the profile gives
    by its dotted name (``mimlib run`` reaches only into those), a value as the YAML that
    ``mimlib run`` reads back to the same value."""
    folder = ((root or Path.cwd()) / "notebooks").resolve()
    defaults = _templates(str(folder)).get(page, {})
    given = profile_parameters(load_profile(profile), page)
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if name == "profile":
            continue
        if name in given:
            pairs += _pairs(name, value, given[name])
        elif not _same(value, defaults.get(name, _MISSING)):
            pairs.append((name, yaml_value(value)))
    return pairs


def _pairs(name: str, actual: Any, expected: Any) -> list[tuple[str, str]]:
    """Pairs for one value against the profile's (fields of a mapping one by one, where the
    profile's mapping has no field that ``actual`` lacks: ``-p`` sets fields, never removes)."""
    if expected is not _MISSING and _same(actual, expected):
        return []
    if isinstance(actual, dict) and isinstance(expected, dict) and set(expected) <= set(actual):
        return [pair for key, value in actual.items()
                for pair in _pairs(f"{name}.{key}", value, expected.get(key, _MISSING))]
    return [(name, yaml_value(actual))]


def _same(a: Any, b: Any) -> bool:
    """Equal as the store and papermill see values (1 and 1.0 differ, tuples are lists)."""
    if a is _MISSING or b is _MISSING:
        return False
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True,
                                                                     default=str)


def yaml_value(value: Any) -> str:
    """A value as the one-line YAML that ``-p NAME VALUE`` reads back to it."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 9,
                          allow_unicode=True).strip()
    if text.endswith("\n..."):  # a scalar document's end marker
        text = text[: -len("\n...")].strip()
    try:
        if _same(parse_value(text), value):
            return text
    except Exception:  # noqa: BLE001 - any text that does not read back: use JSON instead
        pass
    return json.dumps(value)


def commands(page: str, profile: str, params: dict[str, Any],
             root: Path | None = None) -> tuple[str, str]:
    """``mimlib run`` and papermill command lines that re-run ``page`` with ``params``."""
    changes = "".join(f" -p {shlex.quote(name)} {shlex.quote(value)}"
                      for name, value in overrides(page, profile, params, root))
    where = f"{shlex.quote(page)} --profile {shlex.quote(profile)}{changes}"
    return (f"mimlib run {where}",
            f"mimlib parameters {where} > {PARAMS_FILE} && papermill "
            f"notebooks/{shlex.quote(page)}.ipynb {OUT_FILE} -f {PARAMS_FILE}")


def rerun_line(page: str | None, profile: str, params: dict[str, Any]) -> str:
    """The Markdown line under a table or figure: both commands, or why there are none."""
    if page is None:
        return ("Re-run: this run's page is not known (run it with `mimlib run`, or with "
                "papermill from the project's root).")
    if profile not in profile_names():
        return (f"Re-run: profile {profile} is not one of mimlib's profiles (`mimlib "
                "profiles`), so no command names its parameters.")
    run, papermill = commands(page, profile, params)
    return f"Re-run: `{run}`; with papermill: `{papermill}`"
