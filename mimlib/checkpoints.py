"""Saving and loading weights safely: atomic writes, ``weights_only=True``, full SHA-256 checks.

Published checkpoints come from mimlib's registry (:mod:`mimlib.models.registry`: the paper's
and the OE authors' WRN-40-2, the CIFAR ResNets, the DICE DenseNet) or, for any other key,
pytorch-ood's; each download is verified against the registry's full SHA-256 digest before
``torch.load`` sees it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError, ConfigError
from .fetch import Item, ensure, file_digest
from .models import CIFAR, PUBLISHED, PublishedWeights, build_model, set_normalization

#: pytorch-ood's architecture names that mimlib builds
_REGISTRY_ARCHS = {"wrn-40-2": "wrn40_2", "resnet-18": "resnet18"}


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, then rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state_dict_file(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                         sha256: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict from a file, with ``weights_only=True`` and an optional checksum check."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if sha256 is not None and file_digest(path, "sha256") != sha256:
        raise CheckpointError(f"checkpoint {path} fails its SHA-256 check (expected {sha256}); "
                              "delete it and download it again")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickle error, foreign format
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: "
                              f"{err}); delete it and recreate or re-download it") from err
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors")
    return {k.replace("module.", "", 1) if k.startswith("module.") else k: v
            for k, v in obj.items()}


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], origin: str) -> nn.Module:
    """load_state_dict(strict=True), with a message that names what does not fit."""
    own = model.state_dict()
    # BatchNorm's step counter, absent from checkpoints of older torch; torch's strict load
    # accepts that too (it only matters for momentum=None)
    missing = sorted(k for k in set(own) - set(state_dict)
                     if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state_dict) - set(own))
    wrong_keys = [k for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    wrong = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
             for k in wrong_keys]
    if missing or unexpected or wrong:
        details = "; ".join(filter(None, [
            f"missing {missing[:4]}" if missing else "",
            f"unexpected {unexpected[:4]}" if unexpected else "",
            f"shape mismatch {wrong[:3]}" if wrong else ""]))
        hint = (" (trained for another number of classes?)"
                if any(k.startswith("fc.") for k in wrong_keys) else "")
        raise CheckpointError(f"checkpoint {origin} does not fit {type(model).__name__}{hint}: "
                              f"{details}")
    model.load_state_dict(state_dict, strict=True)
    return model


def load_checkpoint(model: nn.Module, path: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> nn.Module:
    """Load weights saved by :func:`atomic_torch_save` (or any state dict file) into model."""
    return load_into(model, load_state_dict_file(path, map_location), str(path))


def _weights_entry(key: str) -> PublishedWeights:
    """mimlib's registry entry for ``key``, or pytorch-ood's as one (its other checkpoints)."""
    if key in PUBLISHED:
        return PUBLISHED[key]
    from pytorch_ood.model import get_model_info

    try:
        entry = get_model_info(key)
    except ValueError as err:
        raise ConfigError(f"unknown published checkpoint {key!r}: mimlib's registry has "
                          f"{sorted(PUBLISHED)}; pytorch-ood says: {err}") from err
    arch = _REGISTRY_ARCHS.get(entry.arch or "")
    if arch is None:
        raise ConfigError(f"checkpoint {key!r} is a {entry.arch}; mimlib loads "
                          f"{sorted(_REGISTRY_ARCHS)} checkpoints")
    return PublishedWeights(key, arch, int(entry.arch_kwargs["num_classes"]), entry.file_name,
                            entry.url, entry.sha256, CIFAR, "see pytorch-ood's registry",
                            f"pytorch-ood's registry ({entry.source})",
                            display=f"{key} (pytorch-ood, published)",
                            id_data=str(entry.dataset), training=str(entry.loss),
                            transform=entry.state_dict_transform)


def weights_cache(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder published weights live in: the given one, or torch hub's checkpoints."""
    return Path(cache_dir or Path(torch.hub.get_dir()) / "checkpoints")


def weights_item(key: str, cache_dir: str | os.PathLike | None = None) -> Item:
    """A published checkpoint as a file to fetch: URL, place in the cache, SHA-256."""
    entry = _weights_entry(key)
    path = weights_cache(cache_dir) / entry.file_name

    def check() -> str | None:
        if not path.is_file():
            return "missing"
        return None if file_digest(path, "sha256") == entry.sha256 else "fails its SHA-256 check"
    return Item(f"weights {key}", entry.url, path, f"sha256:{entry.sha256}", "a few MB",
                "the checkpoint file as published, under its own name", check)


def check_published(key: str, cache_dir: str | os.PathLike | None, download: bool) -> None:
    """Before any work: the key exists, and a cached file (if any) has the pinned SHA-256;
    without a cached file, downloads must be allowed."""
    _cached_weights(key, cache_dir, download, fetch_missing=False)


def _cached_weights(key: str, cache_dir: str | os.PathLike | None, download: bool, *,
                    fetch_missing: bool) -> Item:
    """The weights item, its cached file verified once: a tampered file is refused, a missing
    one is fetched (``fetch_missing`` and downloads on) or listed (downloads off)."""
    item = weights_item(key, cache_dir)
    problem = item.check()
    if problem and item.path.is_file():
        raise CheckpointError(f"cached checkpoint {item.path} fails its SHA-256 check (expected "
                              f"{item.checksum[7:]}); delete it and download it again")
    if problem and (fetch_missing or not download):
        ensure([item], download=download)  # a download is verified before it is renamed
    return item


def load_published(key: str, *, cache_dir: str | os.PathLike | None = None,
                   download: bool = True) -> nn.Module:
    """A published checkpoint as a mimlib model, in eval mode, carrying its normalisation.

    ``key`` names an entry of mimlib's registry (``resnet20/cifar10``,
    ``wrn-40-2/cifar10/crossentropy``; see :data:`mimlib.models.PUBLISHED`) or of pytorch-ood's.
    The file is downloaded once into ``cache_dir`` (default:
    torch hub's checkpoint folder, which pytorch-ood shares), verified against its full SHA-256
    digest, and loaded with ``weights_only=True`` and a strict key match into mimlib's
    architecture.
    """
    entry = _weights_entry(key)
    path = _cached_weights(key, cache_dir, download, fetch_missing=True).path
    state = load_state_dict_file(path)  # its SHA-256 was checked just above
    if entry.transform is not None:
        state = entry.transform(state)
    model = build_model(entry.arch, entry.num_classes)
    model = load_into(model, state, f"{key} ({path})").eval()
    return set_normalization(model, entry.normalization)
