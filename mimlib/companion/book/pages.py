"""The chapters' notebooks and where their executed pages go.

``notebooks/`` holds the templates (``NN_name.ipynb``); ``book/executed/`` the executed pages the
book reads, ``book/failed/`` those that failed, with their tracebacks. Paths are relative to the
project's root.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError, MimlibError

NOTEBOOKS = Path("notebooks")
EXECUTED = Path("book") / "executed"
FAILED = Path("book") / "failed"  # executed notebooks that failed, with their tracebacks


def notebook_names(root: Path) -> list[str]:
    """The chapters' notebooks under ``root`` (``NN_name``), in order."""
    names = sorted(p.stem for p in (root / NOTEBOOKS).glob("[0-9][0-9]_*.ipynb"))
    if not names:
        raise MimlibError(f"no notebooks in {root / NOTEBOOKS}; run from the project's root")
    return names


def resolve_notebook(root: Path, name: str) -> str:
    """A notebook's name from its name, number or path (``07``, ``07_ablation_k``...)."""
    names = notebook_names(root)
    stem = Path(name).stem
    matches = [n for n in names if n == stem or n.split("_")[0] == stem]
    if len(matches) != 1:
        raise ConfigError(f"unknown notebook {name!r}; choose one of {names}")
    return matches[0]
