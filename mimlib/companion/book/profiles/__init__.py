"""The parameter profiles (the YAML files beside this module) and command-line values.

A profile gives every notebook its parameters (``common``, then the notebook's own); ``-p NAME
VALUE`` pairs change them, read as YAML data, never as code.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import yaml

from ....errors import ConfigError


def profile_names() -> list[str]:
    """The profiles shipped with mimlib (``mimlib/companion/book/profiles/*.yml``)."""
    folder = resources.files("mimlib.companion.book.profiles")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".yml"))


def load_profile(name: str) -> dict[str, Any]:
    """A profile as data (YAML parsed with ``safe_load``), with ``extends`` resolved."""
    if name not in profile_names():
        raise ConfigError(f"unknown profile {name!r}; choose one of {profile_names()}")
    text = resources.files("mimlib.companion.book.profiles").joinpath(f"{name}.yml").read_text()
    profile = yaml.safe_load(text) or {}
    parent = profile.pop("extends", None)
    if parent:
        profile = _merge(load_profile(parent), profile)
    return profile


def check_gpu(name: str, profile: dict[str, Any], allow_cpu: bool) -> None:
    """A profile marked ``needs_gpu`` stops up front on a machine without CUDA (it would run
    for days on the CPU without saying so), unless the CPU is asked for."""
    import torch  # imported for this check only: torch is slow to import

    if profile.get("needs_gpu") and not allow_cpu and not torch.cuda.is_available():
        raise ConfigError(f"profile {name!r} needs a GPU and torch sees none (CUDA available: "
                          "no); on a CPU its training runs take days. Run it on a machine with "
                          "a GPU, choose a CPU profile (cifar10-cpu), or pass --allow-cpu to go "
                          "on anyway")


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: nested dicts merge, everything else is replaced."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_value(text: str) -> Any:
    """A command-line value as data: YAML (numbers, lists, dicts, strings), never code.

    YAML 1.1 reads ``1e-4`` (no dot) as a string; numbers written that way become floats.
    """
    try:
        return _numbers(yaml.safe_load(text))
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse parameter value {text!r}: {err}") from err


def _numbers(value: Any) -> Any:
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return float(value)
    return value


def apply_overrides(params: dict[str, Any], overrides: list[tuple[str, str]]) -> dict[str, Any]:
    """Apply ``-p NAME VALUE`` pairs; dotted names reach into dicts (``setup.arch``)."""
    out = json.loads(json.dumps(params))
    for name, raw in overrides:
        value = parse_value(raw)
        *path, leaf = name.split(".")
        target = out
        for part in path:
            if not isinstance(target.get(part), dict):
                raise ConfigError(f"parameter {'.'.join(path)!r} is not a dict, so {name!r} "
                                  "cannot be set")
            target = target[part]
        target[leaf] = value
    return out


def profile_parameters(profile: dict[str, Any], name: str) -> dict[str, Any]:
    """A notebook's parameters in a profile: the common ones, then its own."""
    return _merge(profile.get("common", {}), (profile.get("notebooks") or {}).get(name, {}))
