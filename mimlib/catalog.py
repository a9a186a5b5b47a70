"""What each data set is to a reader: its display name and, for OOD sets, its group.

One registry for every name a table or a store row carries (``row["ood"]``): the label a figure
or table header shows, and the group the OOD literature reports separately. For CIFAR-10 as
in-distribution, OpenOOD v1.5 (Zhang et al., 2023) calls CIFAR-100 and Tiny ImageNet *near*-OOD
(similar images, other classes) and MNIST, SVHN, Textures and Places365 *far*-OOD; LSUN, which
v1.5 dropped, is far-OOD as in OpenOOD v1. The Outlier Exposure paper's synthetic noise sets
(Gaussian, Rademacher, blobs) form a group of their own: no natural image is like them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

#: The groups, in the order tables show them.
OOD_GROUPS = ("near", "far", "noise")
GROUP_LABELS = {"near": "near-OOD", "far": "far-OOD", "noise": "noise (OE paper)"}


@dataclass(frozen=True)
class DataInfo:
    """A data set as readers see it: display name, and group (``id`` for ID sets)."""

    name: str
    display: str
    group: str


_ENTRIES = (
    DataInfo("cifar10", "CIFAR-10", "id"),
    DataInfo("cifar100", "CIFAR-100", "near"),  # as OOD for CIFAR-10 (as ID set: its own row)
    DataInfo("synthetic", "synthetic world", "id"),
    DataInfo("tinyimagenet_crop", "Tiny ImageNet (crop)", "near"),
    DataInfo("tinyimagenet_resize", "Tiny ImageNet (resize)", "near"),
    DataInfo("lsun_crop", "LSUN (crop)", "far"),
    DataInfo("lsun_resize", "LSUN (resize)", "far"),
    DataInfo("svhn", "SVHN", "far"),
    DataInfo("textures", "Textures (DTD)", "far"),
    DataInfo("places365", "Places365", "far"),
    DataInfo("mnist", "MNIST", "far"),
    DataInfo("gaussian", "Gaussian noise", "noise"),
    DataInfo("rademacher", "Rademacher noise", "noise"),
    DataInfo("blobs", "Blobs", "noise"),
    # the embedded synthetic world: unseen shapes and morphs of the ID shapes are near,
    # textures and scenes far
    DataInfo("synthetic_shapes", "synthetic: other shapes", "near"),
    DataInfo("synthetic_morphs", "synthetic: morphed shapes", "near"),
    DataInfo("synthetic_blends", "synthetic: blended shapes", "near"),
    DataInfo("synthetic_textures", "synthetic: textures", "far"),
    DataInfo("synthetic_scenes", "synthetic: scenes", "far"),
)
CATALOG: dict[str, DataInfo] = {info.name: info for info in _ENTRIES}


def register(name: str, display: str, group: str) -> DataInfo:
    """Add (or replace) a data set, e.g. one of the user's own folders, with its group."""
    if group not in (*OOD_GROUPS, "id"):
        raise ConfigError(f"group must be one of {[*OOD_GROUPS, 'id']}, got {group!r}")
    CATALOG[name] = DataInfo(name, display, group)
    return CATALOG[name]


def display_name(name: str) -> str:
    """The readers' label of a data set (its own name when the catalog does not know it)."""
    info = CATALOG.get(name)
    return info.display if info else name


def ood_group(name: str) -> str:
    """near, far or noise; an OOD set the catalog does not know is far-OOD unless
    :func:`register` says otherwise (an unrelated image set is the usual case)."""
    info = CATALOG.get(name)
    return info.group if info and info.group in OOD_GROUPS else "far"


def groups_of(names: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """The given OOD sets by group, in :data:`OOD_GROUPS` order (empty groups left out)."""
    out = {group: [n for n in names if ood_group(n) == group] for group in OOD_GROUPS}
    return {group: members for group, members in out.items() if members}
