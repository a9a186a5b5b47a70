"""The checks every setting goes through, in one place: whole numbers, positive and
non-negative numbers, numbers in an interval, probabilities, flags and choices. Each raises :class:`ConfigError` with
the setting's name, what it must be and what it got, so a bad value in a profile, a ``-p``
option, a notebook parameter or a config object reads the same everywhere."""

from __future__ import annotations

import math
from typing import Any, Iterable

from .errors import ConfigError


def is_whole(value: Any, minimum: int = 1) -> bool:
    """An int (not a bool) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` when it is a whole number >= ``minimum``."""
    if not is_whole(value, minimum):
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def positive(value: Any, name: str) -> float:
    """``value`` when it is a finite number > 0."""
    if not (is_number(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def non_negative(value: Any, name: str) -> float:
    """``value`` when it is a finite number >= 0."""
    if not (is_number(value) and value >= 0):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def interval(value: Any, name: str, low: float, high: float, *, open_low: bool = False,
             open_high: bool = False) -> float:
    """``value`` when it is a finite number between ``low`` and ``high`` (ends open as told)."""
    above = is_number(value) and (value > low if open_low else value >= low)
    if not (above and (value < high if open_high else value <= high)):
        span = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ConfigError(f"{name} must be a finite number in {span}, got {value!r}")
    return value


def probability(value: Any, name: str = "p") -> float:
    """``value`` as a float when it lies in [0, 1]."""
    if not (is_number(value) and 0 <= value <= 1):
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def flag(value: Any, name: str) -> bool:
    """``value`` when it is True or False (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def choice(value: Any, name: str, options: Iterable[Any]) -> Any:
    """``value`` when it is one of ``options``."""
    options = list(options)
    if value not in options:
        raise ConfigError(f"{name} must be one of {options}, got {value!r}")
    return value
