"""What each data set is to a reader: its display name and, for OOD sets, its group.

One registry for every name a table or a store row carries (``row["ood"]``) and for the files a
profile's specs read (``folder:PATH#sha256=...``, known by their checksum): the label a figure
or table header shows (:func:`spec_display`; the spec itself, path and pin, stays in the
provenance line), and the group the OOD literature reports separately. For CIFAR-10 as
in-distribution, OpenOOD v1.5 (Zhang et al., 2023) calls CIFAR-100 and Tiny ImageNet *near*-OOD
(similar images, other classes) and MNIST, SVHN, Textures and Places365 *far*-OOD; LSUN, which
v1.5 dropped, is far-OOD as in OpenOOD v1. The Outlier Exposure paper's synthetic noise sets
(Gaussian, Rademacher, blobs) form a group of their own: no natural image is like them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from ...errors import ConfigError
from ...specs import DataSpec

#: The groups, in the order tables show them.
OOD_GROUPS = ("near", "far", "noise")
GROUP_LABELS = {"near": "near-OOD", "far": "far-OOD", "noise": "noise (OE paper)"}


@dataclass(frozen=True)
class DataInfo:
    """A data set as readers see it: display name, and group (``id`` for ID sets); a set that
    a spec reads from files is known by their SHA-256 (``sha256``, what a pin names) and, in a
    spec without a pin, by the file's name (``file``)."""

    name: str
    display: str
    group: str
    sha256: str = ""
    file: str = ""


_ENTRIES = (
    DataInfo("cifar10", "CIFAR-10", "id"),
    DataInfo("cifar100", "CIFAR-100", "near"),  # as OOD for CIFAR-10 (as ID set: its own row)
    DataInfo("synthetic", "synthetic world", "id"),
    # the JPEG copy of CIFAR-10 in ../shared/data (quality 75), the real profiles' ID data
    DataInfo("cifar10_jpeg", "CIFAR-10 (JPEG copy)", "id",
             sha256="c20cedc58b2083a1705642fc443e86740d29ba7e569a5f488435c732980006ca",
             file="cifar10-jpeg.tar.xz"),
    DataInfo("tinyimagenet_crop", "Tiny ImageNet (crop)", "near"),
    DataInfo("tinyimagenet_resize", "Tiny ImageNet (resize)", "near"),
    DataInfo("lsun_crop", "LSUN (crop)", "far"),
    DataInfo("lsun_resize", "LSUN (resize)", "far"),
    DataInfo("svhn", "SVHN", "far"),
    DataInfo("textures", "Textures (DTD)", "far"),
    DataInfo("places365", "Places365", "far"),
    DataInfo("mnist", "MNIST", "far"),
    # the OpenOOD v1.5 CIFAR-10 benchmark, its exact image lists (OpenOOD's groups)
    DataInfo("openood_cifar10", "CIFAR-10 (OpenOOD v1.5)", "id"),
    DataInfo("openood_cifar100", "CIFAR-100 (OpenOOD)", "near"),
    DataInfo("openood_tin", "Tiny ImageNet (OpenOOD)", "near"),
    DataInfo("openood_mnist", "MNIST (OpenOOD)", "far"),
    DataInfo("openood_svhn", "SVHN (OpenOOD)", "far"),
    DataInfo("openood_texture", "Textures (OpenOOD)", "far"),
    DataInfo("openood_places365", "Places365 (OpenOOD)", "far"),
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


def spec_display(spec: str) -> str:
    """The readers' label of a data-set spec or store name: ``NAME=kind:PATH`` by NAME, a pinned
    file by its checksum (the short ``kind:FILE@12345678`` of :func:`mimlib.pins.display` too),
    a named set by the catalog; files the catalog does not know by their name, without the
    archive suffix. Any other text comes back as it is."""
    text = str(spec)
    short = re.fullmatch(r"(?:(\w+)=)?([a-z]+:)(.+)@([0-9a-f]{8})", text)  # pins.display's form
    if short:
        name, kind, file, prefix = short.groups()
        info = next((i for i in CATALOG.values() if i.sha256.startswith(prefix)), None)
        return display_name(name) if name else info.display if info else _file_label(file, kind)
    try:
        parsed = DataSpec.parse(text)
    except ConfigError:
        return display_name(text)
    if parsed.name is not None:
        return display_name(parsed.name)  # NAME=kind:PATH: the name says what it is
    if not parsed.reads_files:
        return display_name(parsed.where)
    info = next((i for i in CATALOG.values() if i.sha256 and (
        i.sha256 == parsed.pin if parsed.pin else i.file == parsed.file_name)), None)
    return info.display if info else _file_label(parsed.file_name, f"{parsed.kind}:")


def _file_label(file: str, kind: str) -> str:
    stem = re.sub(r"(\.tar)?\.(xz|gz|bz2|zip|tar|tgz)$", "", PurePath(file).name)
    return f"{stem} ({kind[:-1]})" if kind in ("crop:", "resize:") else stem


def ood_group(name: str) -> str:
    """near, far or noise; an OOD set the catalog does not know is far-OOD unless
    :func:`register` says otherwise (an unrelated image set is the usual case)."""
    info = CATALOG.get(name)
    return info.group if info and info.group in OOD_GROUPS else "far"


def groups_of(names: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """The given OOD sets by group, in :data:`OOD_GROUPS` order (empty groups left out)."""
    out = {group: [n for n in names if ood_group(n) == group] for group in OOD_GROUPS}
    return {group: members for group, members in out.items() if members}
