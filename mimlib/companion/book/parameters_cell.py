"""The executed page's parameters cell: the values it ran with, folded in, so that papermill alone
re-runs the page as it ran."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path
from typing import Any


def fold_parameters(path: Path, params: dict[str, Any]) -> None:
    """Make the executed page re-runnable with papermill alone: the values it ran with
    (papermill's injected cell) are written into its parameters cell, in place of the
    template's defaults, and the injected cell goes. ``papermill PAGE OUT -p NAME VALUE`` then
    injects only NAME after that cell, so the page re-runs with its own profile, data and store
    and only the given values changed (papermill would otherwise replace the injected cell, and
    the template's defaults would come back). The cell is folded behind one toggle, like every
    code cell."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            continue
        if "parameters" in tags:
            cell.source = ("# The values this page ran with. Re-run it with papermill from the "
                           "project's root,\n# changing only what you give: -p NAME VALUE, "
                           "-y 'NAME: [a, list]'\n" + fold_values(cell.source, params))
            cell.metadata["tags"] = ["parameters", "hide-input"]
        cells.append(cell)
    nb.cells = cells
    nbformat.write(nb, path)


def fold_values(source: str, params: dict[str, Any]) -> str:
    """A parameters cell's source with each given parameter's value replaced (the comment on
    its first line kept), and given parameters the cell lacks appended; executed as Python it
    sets exactly ``params`` on top of the cell's other defaults."""
    lines = source.splitlines()
    comments = {tok.start[0]: tok.string
                for tok in tokenize.generate_tokens(io.StringIO(source + "\n").readline)
                if tok.type == tokenize.COMMENT}
    out, done, position = [], set(), 0
    for node in ast.parse(source).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            else None
        if isinstance(target, ast.Name) and target.id in params:
            out += lines[position:node.lineno - 1]
            out.append(_assignment(target.id, params[target.id], comments.get(node.lineno)))
            position = node.end_lineno or node.lineno
            done.add(target.id)
    out += lines[position:]
    out += [_assignment(name, value) for name, value in params.items() if name not in done]
    return "\n".join(out)


def _assignment(name: str, value: Any, comment: str | None = None) -> str:
    """``name = value`` as a Python literal with its comment. A long list or mapping, or one
    holding a ``=`` (papermill reads a parameters line with two ``=`` as no parameter and warns),
    goes one item a line, as the templates write theirs."""
    tail = f"  {comment}" if comment else ""
    line = f"{name} = {value!r}"
    if (len(line) <= 100 and "=" not in repr(value)) or not isinstance(value, (list, dict)) \
            or not value:
        return line + tail
    if isinstance(value, dict):
        items = [f"    {k!r}: {_literal(v, 6 + len(repr(k)))}," for k, v in value.items()]
        return "\n".join([f"{name} = {{{tail}", *items, "}"])
    items = [f"    {_literal(v, 4)}," for v in value]
    return "\n".join([f"{name} = [{tail}", *items, "]"])


def _literal(value: Any, column: int) -> str:
    """value as a Python literal that starts at ``column``: within 100 characters a line
    where it can, with at most one ``=`` a line (a pinned spec is split before its ``#sha256=``,
    two adjacent strings that Python joins)."""
    text = repr(value)
    if isinstance(value, str):
        head, sep, pin = value.rpartition("#")
        if value.count("=") > 1 and sep and head.count("=") <= 1 and pin.count("=") <= 1:
            return f"{head!r}\n{' ' * column}{sep + pin!r}"
        return text
    if (column + len(text) <= 100 and text.count("=") <= 1) \
            or not isinstance(value, (list, dict)) or not value:
        return text
    inner = column + 1
    if isinstance(value, list):
        items = [_literal(v, inner) for v in value]
        return "[" + (",\n" + " " * inner).join(items) + "]"
    items = [f"{k!r}: {_literal(v, inner + len(repr(k)) + 2)}" for k, v in value.items()]
    return "{" + (",\n" + " " * inner).join(items) + "}"
