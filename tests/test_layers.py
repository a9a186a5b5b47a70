"""mimlib's modules import one another one way: no circle, at module level or inside a function
(an import inside a function that closes a circle only hides it)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mimlib"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported(node: ast.ImportFrom | ast.Import, here: str, is_package: bool,
              modules: dict[str, Path]) -> set[str]:
    """The mimlib modules one import statement names (a name in ``from X import name`` counts
    as the submodule X.name where there is one, else as X)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    if node.level:
        base = here.split(".") if is_package else here.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target not in modules:
        return set()
    found = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules}
    return found | ({target} if len(found) < len(node.names) else set())


def import_graph() -> dict[str, set[str]]:
    """Each mimlib module to the mimlib modules it imports, anywhere in its file; importing a
    submodule from outside its subpackage also runs (so depends on) the subpackage's
    ``__init__``. The top package's ``__init__`` is left out: every module runs it."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for here, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets |= _imported(node, here, path.name == "__init__.py", modules)
        for target in set(targets):
            parts = target.split(".")
            for n in range(2, len(parts)):
                package = ".".join(parts[:n])
                if not here.startswith(package + ".") and here != package:
                    targets.add(package)
        graph[here] = targets - {here, "mimlib"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports as a path that ends where it starts, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_imports_at_module_level_and_inside_functions() -> None:
    graph = import_graph()
    assert "mimlib.detectors" in graph["mimlib.companion.results.experiment"]  # module level
    assert "mimlib.detectors" in graph["mimlib.companion.analysis.quirks"]  # from ..detectors
    assert "mimlib.companion.run.executors" in graph["mimlib.companion.run.cli"]  # inside a function
    assert "mimlib.companion.analysis" in graph["mimlib.companion.book.session"]  # via analysis.claims: runs its __init__
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_mimlib_imports_have_no_circle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


#: The layers, lowest first: a module imports only from its own layer and those below. The
#: method (what a user imports to apply MIM to their own model) sits below the companion's
#: machinery, whose layers are the folders of ``mimlib/companion/``.
LAYERS: dict[str, tuple[str, ...]] = {
    "foundation": ("errors", "checks", "specs", "progress", "fetch", "pins", "device", "synthetic",
                   "pixels", "noise", "models"),
    "method": ("images", "mixing", "augment", "data", "data_checks", "metrics", "detectors",
               "train_config", "train", "checkpoints"),
    "results": ("results",),
    "analysis": ("analysis",),
    "book": ("book",),
    "run": ("run",),
}


#: The layers of the companion's machinery, one folder each under ``mimlib/companion/``; the
#: others are the method's, the modules directly under ``mimlib/``.
MACHINERY = ("results", "analysis", "book", "run")


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of a mimlib module (``mimlib.companion.analysis.claims`` is
    in the layer of its folder, ``analysis``; the ``mimlib.companion`` package itself, which
    imports nothing, in the machinery's lowest)."""
    parts = module.split(".")[1:]
    if parts == ["companion"]:
        return list(LAYERS).index(MACHINERY[0])
    top = parts[1] if parts[0] == "companion" else parts[0]
    for index, names in enumerate(LAYERS.values()):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points from a lower layer to a higher one."""
    return [f"{here} -> {there}" for here, targets in sorted(graph.items())
            for there in sorted(targets) if layer_of(there) > layer_of(here)]


def test_no_import_points_up_a_layer() -> None:
    graph = {k: v for k, v in import_graph().items() if k != "mimlib"}
    assert upward_imports(graph) == []
    assert upward_imports({"mimlib.train": {"mimlib.companion.results.store"}}) == [
        "mimlib.train -> mimlib.companion.results.store"]  # the check sees one
    assert upward_imports({"mimlib.companion.results.store": {
        "mimlib.companion.book.session"}}) == [
        "mimlib.companion.results.store -> mimlib.companion.book.session"]
    names = [n for layer in LAYERS.values() for n in layer]
    assert len(names) == len(set(names)), "a module is in two layers"


def test_the_folders_show_the_layers() -> None:
    """The method's modules sit directly in ``mimlib/``; every module of the machinery sits in
    the folder of its layer under ``mimlib/companion/``, none loose beside them."""
    for module in import_graph():
        parts = module.split(".")[1:]
        if not parts or parts == ["companion"]:
            continue
        layer = list(LAYERS)[layer_of(module)]
        assert (parts[0] == "companion") == (layer in MACHINERY), (module, layer)
        if parts[0] == "companion":
            assert len(parts) >= 2 and parts[1] == layer, (module, layer)
    loose = sorted(p.name for p in (PACKAGE / "companion").glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules loose in mimlib/companion/: {loose}"


#: The most lines a module may have: past it, a module holds more than one job.
MAX_LINES = 450


def test_no_module_is_longer_than_one_job() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these by job: {long}"


def test_the_package_exports_only_the_method() -> None:
    """``import mimlib`` gives what applying MIM to one's own model needs, nothing of the
    book's machinery."""
    method = LAYERS["method"] + LAYERS["foundation"]
    assert all(t.split(".")[1] in method for t in import_graph().get("mimlib", set()))


def test_the_readme_draws_the_same_layers() -> None:
    """The README's drawing of the layers is this table's, top layer first."""
    text = (PACKAGE.parent / "README.md").read_text()
    block = text.split("```\nrun", 1)[1].split("```", 1)[0]
    drawn: dict[str, list[str]] = {}
    layer = "run"
    for line in ("run" + block).splitlines():
        head, _, rest = line.partition("  ")
        if head.strip():
            layer = head.strip()
        drawn.setdefault(layer, []).extend(
            n.strip().rstrip("/").removeprefix("mimlib/companion/") for n in rest.split(",")
            if n.strip())
    assert list(drawn) == list(reversed(LAYERS))
    assert {k: sorted(v) for k, v in drawn.items()} == {k: sorted(v) for k, v in LAYERS.items()}
