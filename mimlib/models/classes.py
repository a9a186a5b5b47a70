"""Validation shared by the architectures."""

from ..errors import ConfigError


def check_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be a whole number >= 2, got {num_classes!r}")
    return num_classes
