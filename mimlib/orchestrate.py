"""Running the notebooks with papermill and building the book with Jupyter Book.

``reproduce`` runs every notebook of ``notebooks/`` with a profile's parameters, writes the
executed copies to ``book/executed/`` (where the book reads them) and builds the book in strict
mode. A manifest remembers each notebook's fingerprint (its source, its parameters and mimlib's
code), so an unchanged notebook is skipped unless forced. A failing notebook does not stop the
others; the summary names it and the executed notebook that holds its traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import ConfigError, MimlibError
from .executors import ExecutorSettings
from .store import USAGE_ENV, Store, canonical_json

EXECUTED = Path("book") / "executed"
FAILED = Path("book") / "failed"  # executed notebooks that failed, with their tracebacks
MANIFEST = EXECUTED / "manifest.json"
NOTEBOOKS = Path("notebooks")


@dataclass
class NotebookResult:
    """What happened to one notebook in a run."""

    name: str
    status: str  # "ok", "skipped" (unchanged) or "failed"
    executed: str
    seconds: float
    error: str = ""
    log: str = ""  # the job's log, when it ran as a job (mimlib.executors)


# --------------------------------------------------------------------------- profiles

def profile_names() -> list[str]:
    """The profiles shipped with mimlib (``mimlib/profiles/*.yml``)."""
    folder = resources.files("mimlib.profiles")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".yml"))


def load_profile(name: str) -> dict[str, Any]:
    """A profile as data (YAML parsed with ``safe_load``), with ``extends`` resolved."""
    if name not in profile_names():
        raise ConfigError(f"unknown profile {name!r}; choose one of {profile_names()}")
    text = resources.files("mimlib.profiles").joinpath(f"{name}.yml").read_text()
    profile = yaml.safe_load(text) or {}
    parent = profile.pop("extends", None)
    if parent:
        profile = _merge(load_profile(parent), profile)
    return profile


def check_gpu(name: str, profile: dict[str, Any], allow_cpu: bool) -> None:
    """A profile marked ``needs_gpu`` stops up front on a machine without CUDA (it would run
    for days on the CPU without saying so), unless the CPU is asked for."""
    import torch

    if profile.get("needs_gpu") and not allow_cpu and not torch.cuda.is_available():
        raise ConfigError(f"profile {name!r} needs a GPU and torch sees none (CUDA available: "
                          "no); on a CPU its training runs take days. Run it on a machine with "
                          "a GPU, choose a CPU profile (cifar10-cpu), or pass --allow-cpu to go "
                          "on anyway")


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: nested dicts merge, everything else is replaced."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_value(text: str) -> Any:
    """A command-line value as data: YAML (numbers, lists, dicts, strings), never code.

    YAML 1.1 reads ``1e-4`` (no dot) as a string; numbers written that way become floats.
    """
    try:
        return _numbers(yaml.safe_load(text))
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse parameter value {text!r}: {err}") from err


def _numbers(value: Any) -> Any:
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return float(value)
    return value


def apply_overrides(params: dict[str, Any], overrides: list[tuple[str, str]]) -> dict[str, Any]:
    """Apply ``-p NAME VALUE`` pairs; dotted names reach into dicts (``setup.arch``)."""
    out = json.loads(json.dumps(params))
    for name, raw in overrides:
        value = parse_value(raw)
        *path, leaf = name.split(".")
        target = out
        for part in path:
            if not isinstance(target.get(part), dict):
                raise ConfigError(f"parameter {'.'.join(path)!r} is not a dict, so {name!r} "
                                  "cannot be set")
            target = target[part]
        target[leaf] = value
    return out


# --------------------------------------------------------------------------- notebooks

def notebook_names(root: Path) -> list[str]:
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


def profile_parameters(profile: dict[str, Any], name: str) -> dict[str, Any]:
    """A notebook's parameters in a profile: the common ones, then its own."""
    return _merge(profile.get("common", {}), (profile.get("notebooks") or {}).get(name, {}))


def notebook_parameters(root: Path, name: str, profile: dict[str, Any],
                        overrides: list[tuple[str, str]] = ()) -> dict[str, Any]:
    """The parameters a notebook runs with: profile (common, then its own), then overrides.

    Every name must be a parameter of the notebook, and the values must pass mimlib's checks
    (:func:`mimlib.notebook.check_parameters`), before anything runs.
    """
    import papermill as pm

    from .notebook import check_parameters

    if any(key == "profile" for key, _ in overrides):
        raise ConfigError("choose a profile with --profile, not -p profile: a profile's results "
                          "are labelled and exported under its name, so that name is not a "
                          "parameter to change")
    params = apply_overrides(profile_parameters(profile, name), list(overrides))
    declared = pm.inspect_notebook(str(root / NOTEBOOKS / f"{name}.ipynb"))
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ConfigError(f"{name} has no parameter(s) {unknown}; its parameters are "
                          f"{sorted(declared)}")
    check_parameters(name, params)
    return params


def parameters_yaml(name: str, profile_name: str, params: dict[str, Any]) -> str:
    """A notebook's parameters as the YAML file papermill's ``-f`` reads: with it, papermill
    runs the template of ``notebooks/`` as ``mimlib run`` would with that profile."""
    head = (f"# {name} with profile {profile_name} (mimlib parameters); run from the project's "
            f"root:\n# papermill notebooks/{name}.ipynb OUT.ipynb -f THIS_FILE [-p NAME VALUE]\n")
    return head + yaml.safe_dump(params, sort_keys=False, width=100,
                                 default_flow_style=None, allow_unicode=True)


def mimlib_fingerprint() -> str:
    """A hash of mimlib's own code and profiles: results of a changed library are stale."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".yml", ".csv") and "__pycache__" not in path.parts:
            h.update(path.relative_to(package).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def fingerprint(root: Path, name: str, params: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update((root / NOTEBOOKS / f"{name}.ipynb").read_bytes())
    h.update(canonical_json(params).encode())
    h.update(mimlib_fingerprint().encode())
    return h.hexdigest()


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a damaged manifest only costs re-running notebooks


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    path = root / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, path)


def run_notebooks(root: Path, names: list[str], profile_name: str,
                  overrides: list[tuple[str, str]] = (), *, force: bool = False,
                  progress: bool = True, announce: bool = False, allow_cpu: bool = False,
                  executor: ExecutorSettings | None = None) -> list[NotebookResult]:
    """Execute notebooks with papermill; see the module docstring. ``progress`` draws terminal
    bars; ``announce`` prints a plain line as each notebook starts (for logs, not terminals);
    ``allow_cpu`` runs a profile that needs a GPU on a machine without one; ``executor`` says
    where the notebooks run (default: here, one after another; see :mod:`mimlib.executors`)."""
    from .executors import run_jobs
    from .needs import prepare

    profile = load_profile(profile_name)
    check_gpu(profile_name, profile, allow_cpu)
    # validate everything first: a typo in the last notebook must not cost the first ones
    planned = [(name, notebook_parameters(root, name, profile, overrides)) for name in names]
    manifest = _read_manifest(root)
    # fingerprints of the code and parameters as they are now, before anything runs: a file
    # edited during a long run must not be recorded as what ran
    prints = {name: fingerprint(root, name, params) for name, params in planned}

    def unchanged(name: str, params: dict[str, Any]) -> bool:
        previous = manifest.get(name, {})
        return (not force and previous.get("fingerprint") == prints[name]
                and previous.get("status") == "ok"
                and (root / EXECUTED / f"{name}.ipynb").is_file())

    todo = [(name, params, root / EXECUTED / f"{name}.ipynb") for name, params in planned
            if not unchanged(name, params)]
    # only a run with the profile's own parameters records which store entries it used (what
    # the chapter costs); a what-if run (-p) leaves the profile's records as they are
    own = {name for name, params in planned if params == profile_parameters(profile, name)}
    # everything the notebooks to run need, fetched or listed before the first kernel starts
    prepare([params for _, params, _ in todo], progress=progress)
    parameters = dict(planned)
    bar = _bar(len(todo), "notebooks", progress and bool(todo))

    def started(name: str) -> None:
        if bar is not None:
            bar.set_description(name)
        if announce:
            print(f"running {name} ...", file=sys.stderr, flush=True)

    def finished(result: NotebookResult) -> None:  # only this process writes the manifest
        params = parameters[result.name]
        manifest[result.name] = {"fingerprint": prints[result.name],
                                 "status": result.status, "profile": profile_name,
                                 "seconds": result.seconds, "parameters": params}
        _write_manifest(root, manifest)
        if bar is not None:
            bar.update(1)

    ran = {r.name: r for r in run_jobs(root, todo, executor or ExecutorSettings(),
                                       progress=progress, on_start=started, on_done=finished,
                                       record_usage=own)}
    if bar is not None:
        bar.close()
    return [ran.get(name) or NotebookResult(name, "skipped", str(root / EXECUTED /
                                                                   f"{name}.ipynb"), 0.0)
            for name, _ in planned]


def execute_notebook(root: Path, name: str, params: dict[str, Any], out: Path,
                     progress: bool = False, record_usage: bool = True) -> NotebookResult:
    """Run notebook ``name`` with papermill into ``out``; the status says whether it ran.

    Only a notebook that succeeds replaces ``out``, moves the files it exported into
    ``book/exports/`` and, with ``record_usage``, records which store entries it used: a
    failed one is kept in ``book/failed/`` with its traceback, and the last good page, exports
    and records stay as they were. No manifest, no skipping: see run_notebooks.
    """
    import papermill as pm

    from .report import exports_dir

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.stem}.{os.getpid()}.running.ipynb")
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{name}-", dir=out.parent))
    used = staging.with_name(staging.name + ".usage")  # the store entries it reads
    start = time.perf_counter()
    error = ""
    try:
        with _progress_channel(progress) as env:
            try:
                with _environment({**env, "MIMLIB_EXPORTS_STAGING": str(staging),
                                   "MIMLIB_NOTEBOOK": name, USAGE_ENV: str(used)}):
                    pm.execute_notebook(str(root / NOTEBOOKS / f"{name}.ipynb"), str(tmp_out),
                                        parameters=params, cwd=str(root), progress_bar=False,
                                        log_output=False, kernel_name="python3",
                                        # the kernel's own log is noise here (a plain-TCP
                                        # notice on every start; "KeyboardInterrupt caught in
                                        # kernel", logged as an error when the client stops an
                                        # idle kernel); cell errors land in the notebook and a
                                        # dead kernel is reported by papermill
                                        extra_arguments=["--log-level=CRITICAL"])
                status = "ok"
            except pm.PapermillExecutionError as err:
                status, error = "failed", f"{err.ename}: {err.evalue}"
            except Exception as err:  # kernel died, timeout...
                status, error = "failed", f"{type(err).__name__}: {err}"
        if status == "ok":
            _move_tree(staging, root / exports_dir())
            if record_usage:
                _record_usage(name, used)
        else:
            out = root / FAILED / out.name
            out.parent.mkdir(parents=True, exist_ok=True)
        if tmp_out.is_file():
            _fold_parameters(tmp_out, params)
            os.replace(tmp_out, out)  # the executed copy, with its traceback when it failed
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        used.unlink(missing_ok=True)
        tmp_out.unlink(missing_ok=True)
    return NotebookResult(name, status, str(out), time.perf_counter() - start, error)


def _record_usage(name: str, used: Path) -> None:
    """Store, in each results store the run read, which of its entries the notebook used; a
    store that cannot be written (read-only) keeps its last record, and the run is fine."""
    by_store: dict[str, set[str]] = {}
    if used.is_file():
        for line in used.read_text().splitlines():
            use = json.loads(line)
            by_store.setdefault(use["store"], set()).add(f"{use['kind']}/{use['key']}")
    for root, entries in by_store.items():
        try:
            Store(root).record_usage(name, entries)
        except OSError as err:
            print(f"mimlib: {name} ran fine, but which entries of {root} it used could not be "
                  f"recorded there ({err}); its last record stays", file=sys.stderr)


def _fold_parameters(path: Path, params: dict[str, Any]) -> None:
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
    import ast
    import io
    import tokenize

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


def _move_tree(source: Path, target: Path) -> None:
    """Move every file under source to the same place under target (replacing)."""
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        final = target / path.relative_to(source)
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(final))


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _progress_channel(progress: bool) -> Iterator[dict[str, str]]:
    """A file the kernel writes step progress to, drawn as a terminal bar by a thread."""
    if not progress:
        yield {"MIMLIB_PROGRESS": "0"}
        return
    fd, path = tempfile.mkstemp(prefix="mimlib-progress-", suffix=".jsonl")
    os.close(fd)
    stop = threading.Event()
    thread = threading.Thread(target=_follow, args=(path, stop), daemon=True)
    thread.start()
    try:
        yield {"MIMLIB_PROGRESS": "1", "MIMLIB_PROGRESS_FILE": path}
    finally:
        stop.set()
        thread.join(timeout=2)
        Path(path).unlink(missing_ok=True)


def _follow(path: str, stop: threading.Event) -> None:
    bars: dict[str, Any] = {}
    with open(path) as fh:
        while not stop.is_set():
            line = fh.readline()
            if not line:
                time.sleep(0.2)
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            bar = bars.get(event["desc"])
            if bar is None or event["n"] < bar.n:
                if bar is not None:
                    bar.close()
                bar = bars[event["desc"]] = _bar(event["total"], f"  {event['desc']}", True,
                                                 position=1)
            bar.update(event["n"] - bar.n)
    for bar in bars.values():
        bar.close()


def _bar(total: int, desc: str, enabled: bool, position: int = 0) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, position=position, leave=position == 0,
                file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------- the book

def build_book(root: Path, *, strict: bool = True) -> Path:
    """``jupyter-book build`` of the project root (warnings are errors when strict)."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--path-output",
           str(root)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode:
        output = proc.stdout + proc.stderr
        tail = "\n".join(output.strip().splitlines()[-40:])
        hint = ("\nA table or figure file that a chapter links is missing (book/exports/ deleted "
                "or moved?): re-run the chapters with `mimlib reproduce --force`."
                if "download file not readable" in output else "")
        raise MimlibError(f"the book did not build (jupyter-book exit {proc.returncode}):\n"
                          f"{tail}{hint}")
    return root / "_build" / "html" / "index.html"


def summary(results: list[NotebookResult]) -> str:
    """One line per notebook, failures with the executed notebook that holds the traceback."""
    lines = []
    for r in results:
        line = f"{r.status:>7}  {r.name}  ({r.seconds:.0f} s)"
        if r.status == "failed":
            line += f"\n         {r.error}\n         traceback: {r.executed}"
            if r.log:
                line += f"\n         job log: {r.log}"
        lines.append(line)
    failed = sum(r.status == "failed" for r in results)
    lines.append(f"{len(results) - failed} of {len(results)} notebooks ok"
                 + (f", {failed} failed" if failed else ""))
    return "\n".join(lines)

