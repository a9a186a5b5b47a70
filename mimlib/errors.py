"""Errors a user can cause. Each message says what went wrong and what to do about it.

The command line turns any :class:`MimlibError` into a one-paragraph message and a non-zero exit
code instead of a traceback, so every check that guards user input raises one of these.
"""

from __future__ import annotations


class MimlibError(Exception):
    """Base class of every error caused by input (parameters, data, checkpoints, numerics)."""


class ConfigError(MimlibError, ValueError):
    """A parameter is unknown, has the wrong type, or lies outside its allowed range."""


class DataError(MimlibError):
    """A data set is missing, empty, unreadable, or would need a download that is switched off."""


class StoreError(MimlibError):
    """A results store holds a damaged entry, or cannot be written where a result is missing."""


class CheckpointError(MimlibError):
    """A checkpoint is corrupt, truncated, fails its checksum, or does not fit the model."""


class NonFiniteLossError(MimlibError, FloatingPointError):
    """Training produced a NaN or infinite loss; carries the step at which it happened."""

    def __init__(self, step: int, loss_id: float, loss_mix: float) -> None:
        self.step = step
        super().__init__(
            f"non-finite loss at step {step} (ID loss {loss_id}, outlier loss {loss_mix}); "
            "lower the learning rate, check the input normalisation, or start from a finite "
            "checkpoint. Nothing was written to the results store."
        )


class DeviceMemoryError(MimlibError, MemoryError):
    """The accelerator ran out of memory; suggests a smaller batch size."""
