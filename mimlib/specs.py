"""Data and base specs, the short strings a configuration names its data and starting point by,
parsed once into values the rest of mimlib reads instead of the text.

Data specs (see :mod:`mimlib.data` for what each set is):

* a named set: ``cifar10``, ``svhn``, ``gaussian``, ``mnist``... (ID sets: :data:`ID_SETS`);
* files: ``folder:PATH`` (an ID ImageFolder), ``crop:PATH`` / ``resize:PATH`` (an OOD folder or
  archive of images) and ``mnist:PATH`` (the MNIST test files), an OOD one optionally named
  ``NAME=crop:PATH``; any of them may pin its files' SHA-256, ``folder:PATH#sha256=HEX``
  (see :mod:`mimlib.pins`).

Base specs (:class:`mimlib.companion.results.setup.Setup`'s ``base``): ``pretrain`` (trained here),
``published`` (the paper's checkpoint for the ID data), ``registry:KEY`` (mimlib's or
pytorch-ood's registry of published weights) and ``checkpoint:PATH`` (a state dict file).

The text stays what configurations and store keys hold; :attr:`DataSpec.text` and
:attr:`BaseSpec.text` give it back in canonical form.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import synthetic
from .errors import ConfigError

PIN = "#sha256="
#: The kinds of data spec that read files (``KIND:PATH``).
FILE_KINDS = ("folder", "crop", "resize", "mnist")
#: What names ``mnist:FOLDER``: its image file (the labels are not used for an OOD set)
MNIST_IMAGES = "t10k-images-idx3-ubyte.gz"

#: The OpenOOD v1.5 CIFAR-10 benchmark's sets, read through its exact image lists
#: (:mod:`mimlib.fetch` ``openood_items``): the ID set, then near-OOD, then far-OOD.
OPENOOD_ID = "openood_cifar10"
OPENOOD_OOD_SETS = ("openood_cifar100", "openood_tin", "openood_mnist", "openood_svhn",
                    "openood_texture", "openood_places365")
ID_SETS = ("cifar10", "cifar100", "synthetic", OPENOOD_ID)
PAPER_OOD_SETS = ("tinyimagenet_crop", "tinyimagenet_resize", "lsun_crop", "lsun_resize", "svhn",
                  "textures", "places365")
NOISE_SETS = ("gaussian", "rademacher", "blobs")
SYNTHETIC_OOD_SETS = tuple(f"synthetic_{k}" for k in synthetic.OOD_KINDS)
#: Auxiliary outlier sets for Outlier Exposure (never used as test sets).
AUXILIARY_SETS = ("tinyimages300k",) + tuple(f"synthetic_{k}" for k in synthetic.AUXILIARY_KINDS)
OOD_SETS = (PAPER_OOD_SETS + NOISE_SETS + SYNTHETIC_OOD_SETS + AUXILIARY_SETS + ("mnist",)
            + OPENOOD_OOD_SETS)
#: What each role accepts: the named sets and the kinds that read files.
_ACCEPTED = {"id": (ID_SETS, ("folder",)), "ood": (OOD_SETS, ("crop", "resize", "mnist")),
             "any": (ID_SETS + OOD_SETS, FILE_KINDS)}
_ACCEPTED_TEXT = {
    "id": f"one of {list(ID_SETS)} or 'folder:PATH' (an ImageFolder layout with train/ and test/ "
          "inside)",
    "ood": f"one of {list(OOD_SETS)}, 'crop:PATH' / 'resize:PATH' (optionally 'NAME=crop:PATH') "
           "for a folder of images, or 'mnist:PATH' for the MNIST test files",
    "any": f"a named set ({list(ID_SETS + OOD_SETS)}) or KIND:PATH with KIND one of "
           f"{list(FILE_KINDS)}"}


@dataclass(frozen=True)
class DataSpec:
    """A data source as a configuration names it: a named set, or files of one kind at a path;
    optionally with a name for its rows (``NAME=``) and the SHA-256 its files must have."""

    kind: str  # "set" (a named set) or one of FILE_KINDS
    where: str  # the set's name, or the path as written
    name: str | None = None  # NAME of NAME=crop:PATH (OOD sets only)
    pin: str | None = None  # 64 lower-case hex digits

    @classmethod
    def parse(cls, text: str | DataSpec, role: str = "any") -> DataSpec:
        """The spec ``text`` names, checked against what ``role`` (id, ood, any) accepts."""
        if isinstance(text, DataSpec):
            return cls.parse(text.text, role) if role != "any" else text
        if not isinstance(text, str):
            raise ConfigError(f"a data set is named by text, got {text!r}; give "
                              f"{_ACCEPTED_TEXT[role]}")
        body, sep, pin = text.partition(PIN)
        if sep:
            pin = pin.strip().lower()
            if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
                raise ConfigError(f"{text!r}: a pin is '#sha256=' and 64 hex digits, got {pin!r}")
        head = body.split(":", 1)[0]
        name, _, target = body.partition("=") if "=" in head else (None, "", body)
        kind, colon, where = target.partition(":")
        sets, kinds = _ACCEPTED[role]
        if colon and kind in kinds and where:
            spec = cls(kind, where, name, pin or None)
        elif not colon and target in sets:
            spec = cls("set", target, name, pin or None)
        else:
            raise ConfigError(f"unknown {'' if role == 'any' else role.upper() + ' '}data set "
                              f"{text!r}; choose {_ACCEPTED_TEXT[role]}")
        if spec.pin and not spec.reads_files:
            raise ConfigError(f"{text!r}: only specs that read files "
                              f"({', '.join(k + ':' for k in FILE_KINDS)}) take a pin")
        if spec.name is not None and (role == "id" or spec.kind == "folder"):
            raise ConfigError(f"{text!r}: an ID data set takes no 'NAME='; give "
                              f"{_ACCEPTED_TEXT['id']}")
        return spec

    @property
    def text(self) -> str:
        """The canonical spec: ``[NAME=]TARGET[#sha256=HEX]``."""
        return f"{self.named(self.target)}{PIN + self.pin if self.pin else ''}"

    def __str__(self) -> str:
        return self.text

    @property
    def target(self) -> str:
        """What is read, without name and pin: a set's name or ``KIND:PATH``."""
        return self.where if self.kind == "set" else f"{self.kind}:{self.where}"

    def named(self, target: str) -> str:
        """``target`` with this spec's ``NAME=`` in front (where it has one)."""
        return f"{self.name}={target}" if self.name is not None else target

    @property
    def reads_files(self) -> bool:
        """Whether the spec names files (``KIND:PATH``) rather than a set by its name."""
        return self.kind != "set"

    @property
    def path(self) -> Path | None:
        """The folder or archive the spec reads (``~`` expanded), or None for a named set."""
        return Path(self.where).expanduser() if self.reads_files else None

    @property
    def source_path(self) -> Path | None:
        """The file or folder whose bytes name the data: the path, or for ``mnist:FOLDER`` its
        image file."""
        if self.path is None:
            return None
        return self.path / MNIST_IMAGES if self.kind == "mnist" else self.path

    @property
    def file_name(self) -> str | None:
        """The name of the folder or archive the spec reads (its label without a catalog)."""
        return self.path.name if self.path is not None else None


@dataclass(frozen=True)
class BaseSpec:
    """The starting point of an experiment: trained here (``pretrain``), the paper's published
    checkpoint (``published``), a registry entry (``registry:KEY``) or a file
    (``checkpoint:PATH``)."""

    kind: str  # "pretrain", "published", "registry" or "checkpoint"
    value: str = ""  # the registry key or the checkpoint's path

    @classmethod
    def parse(cls, text: str | BaseSpec) -> BaseSpec:
        """The base ``text`` names, or ConfigError listing the accepted forms."""
        if isinstance(text, BaseSpec):
            return text
        kind, colon, value = text.partition(":") if isinstance(text, str) else ("", "", "")
        if (not colon and kind in ("pretrain", "published")) or (
                colon and kind in ("registry", "checkpoint") and value):
            return cls(kind, value)
        raise ConfigError("base must be 'pretrain', 'published', 'registry:KEY' (a key of "
                          "mimlib's or pytorch-ood's registry of published weights) or "
                          f"'checkpoint:PATH', got {text!r}")

    @classmethod
    def find(cls, text: object) -> BaseSpec | None:
        """The base ``text`` names, or None where it names none (a label of something else)."""
        try:
            return cls.parse(text)  # type: ignore[arg-type]
        except ConfigError:
            return None

    @property
    def text(self) -> str:
        """The canonical spec: ``pretrain``, ``published``, ``registry:KEY``, ``checkpoint:PATH``."""
        return f"{self.kind}:{self.value}" if self.value else self.kind

    def __str__(self) -> str:
        return self.text

    @property
    def loaded(self) -> bool:
        """Whether the base is loaded (published, registry, file) rather than trained here."""
        return self.kind != "pretrain"
