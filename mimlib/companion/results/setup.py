"""What an experiment is about: its data, architecture, starting point, protocol and numerics,
checked for form here and for presence on this machine in :meth:`Setup.preflight`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ... import data as D
from ... import data_checks, pins
from ...checkpoints import weights_cache
from ...device import (EVAL_PRECISIONS, LAYOUTS, PRECISIONS, planned_device, resolve_device)
from ...checks import choice, flag, positive, whole
from ...errors import ConfigError
from ...models import ARCHITECTURES, build_model, paper_weights
from ...specs import NOISE_SETS, SYNTHETIC_OOD_SETS, BaseSpec, DataSpec
from .protocol import check_protocol


SMOKE_OOD = SYNTHETIC_OOD_SETS + NOISE_SETS


@dataclass(frozen=True)
class Setup:
    """What an experiment is about. Each step's store key takes the fields that decide its
    result (data by checksum); device, paths, downloads and batch sizes only decide where and
    how fast it is computed."""

    id_data: str = "synthetic"  # a data spec (see mimlib.specs); parsed: id_spec
    ood_sets: tuple[str, ...] = SMOKE_OOD  # parsed: ood_specs
    arch: str = "small_cnn"
    base: str = "pretrain"  # a base spec (see mimlib.specs); parsed: base_spec
    pretrain_epochs: float = 100.0
    pretrain_lr: float = 0.1
    adapt_epochs: int = 0  # >0: adapt a loaded base to the ID data first (at most this many epochs)
    adapt_lr: float = 0.01
    curve_limit: int | None = None  # images per set for the evaluations during training
    protocol: str = "corrected"
    train_limit: int | None = None
    test_limit: int | None = None
    ood_limit: int | None = None
    seed: int = 0
    device: str = "auto"
    data_root: str = D.DataOptions().root
    download: bool = True
    eval_batch_size: int = 512
    # numerics (each in the store keys where it differs from fp32 / contiguous, so a run
    # computed another way is never mixed with one computed before these settings existed):
    precision: str = "auto"  # training: fp32 or bf16 autocast; auto: bf16 on CUDA, else fp32
    layout: str = "auto"  # training: contiguous or channels_last; auto: by the device
    eval_precision: str = "fp32"  # evaluation forward passes: fp32 (as the authors) or bf16
    eval_layout: str = "auto"  # evaluation forward passes' memory layout
    deterministic: bool = False  # CUDA: deterministic kernels (slower); CPU runs are anyway
    weights_dir: str | None = None  # where published weights are (default: torch hub's cache)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ood_sets", tuple(self.ood_sets))
        check_protocol(self.protocol)
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of "
                              f"{sorted(ARCHITECTURES)}")
        if not self.ood_sets:
            raise ConfigError("ood_sets is empty: give at least one OOD data set")
        self.id_spec, self.ood_specs, self.base_spec  # noqa: B018  # each spec parses
        paper = paper_weights(self.id_data)
        if self.base_spec.kind == "published" and (paper is None or paper.arch != self.arch):
            raise ConfigError("published checkpoints exist for WRN-40-2 on cifar10 and cifar100 "
                              f"only, not {self.arch} on {self.id_data}; use base='pretrain'")
        if self.adapt_epochs and not self.base_spec.loaded:
            raise ConfigError("adapt_epochs adapts a loaded base (published, registry:, "
                              "checkpoint:) to the ID data; a model pretrained here needs none")
        whole(self.adapt_epochs, "adapt_epochs", minimum=0)
        for name in ("train_limit", "test_limit", "ood_limit", "curve_limit"):
            if getattr(self, name) is not None:
                whole(getattr(self, name), f"{name} (or None: all)")
        for name in ("pretrain_epochs", "pretrain_lr", "adapt_lr"):
            positive(getattr(self, name), name)
        whole(self.eval_batch_size, "eval_batch_size")
        whole(self.seed, "seed", minimum=0)
        choice(self.eval_precision, "eval_precision", EVAL_PRECISIONS)
        # what the settings say, checked without asking this machine: a stored result is
        # read on any machine; one that cannot compute a step says so when the step computes
        planned_device(self.device)
        choice(self.precision, "precision", ("auto", *PRECISIONS))
        for name in ("layout", "eval_layout"):
            choice(getattr(self, name), name, ("auto", *LAYOUTS))
        for name in ("download", "deterministic"):
            flag(getattr(self, name), name)

    @functools.cached_property
    def id_spec(self) -> DataSpec:
        """``id_data`` parsed (checked when the setup is made)."""
        return DataSpec.parse(self.id_data, "id")

    @functools.cached_property
    def ood_specs(self) -> tuple[DataSpec, ...]:
        """``ood_sets`` parsed (checked when the setup is made)."""
        return tuple(DataSpec.parse(spec, "ood") for spec in self.ood_sets)

    @functools.cached_property
    def base_spec(self) -> BaseSpec:
        """``base`` parsed (checked when the setup is made)."""
        return BaseSpec.parse(self.base)

    @property
    def published_key(self) -> str | None:
        """The registry key of the published weights a ``published`` or ``registry:`` base
        loads (None for one trained here or read from a file)."""
        spec = self.base_spec
        if spec.kind == "published":
            return paper_weights(self.id_data).key  # type: ignore[union-attr]  # checked
        return spec.value if spec.kind == "registry" else None

    @property
    def results_only(self) -> bool:
        """Whether pinned data are absent: stored results named by their pins are read, and
        only a step that needs the data themselves fails (with a message saying so)."""
        return any(pins.is_absent(spec) for spec in (self.id_spec, *self.ood_specs))

    def preflight(self) -> None:
        """Checks that touch the file system but do no heavy work: data paths exist, data
        is present when downloads are off, a checkpoint file loads and fits the model.
        Pinned data may be absent (see :attr:`results_only`)."""
        if self.results_only:
            return
        resolve_device(self.device)  # the data are here, so a page may compute on the device
        options = D.DataOptions(self.data_root, self.download)
        data_checks.check_available(self.id_spec, options, role="id")
        for spec in self.ood_specs:
            data_checks.check_available(spec, options)
        if self.published_key is not None:
            from ...checkpoints import check_published

            check_published(self.published_key, self.weights_folder, self.download)
        self.check_checkpoint()

    def check_checkpoint(self) -> None:
        """A ``checkpoint:PATH`` base loads and fits the model (nothing to check otherwise)."""
        if self.base_spec.kind == "checkpoint":
            from ...checkpoints import load_into, load_state_dict_file

            path = self.base_spec.value
            state = load_state_dict_file(path)
            classes = data_checks.known_num_classes(self.id_spec)
            if classes is not None:
                load_into(build_model(self.arch, classes), state, path)

    @property
    def weights_folder(self) -> Path:
        """Where published weights are read from and downloaded to: ``weights_dir``, or torch
        hub's checkpoint folder, which pytorch-ood's own downloads share."""
        return weights_cache(self.weights_dir)
