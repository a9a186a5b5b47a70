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
from .store import canonical_json

EXECUTED = Path("book") / "executed"
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


def notebook_parameters(root: Path, name: str, profile: dict[str, Any],
                        overrides: list[tuple[str, str]] = ()) -> dict[str, Any]:
    """The parameters a notebook runs with: profile (common, then its own), then overrides.

    Every name must be a parameter of the notebook, and the values must pass mimlib's checks
    (:func:`mimlib.notebook.check_parameters`), before anything runs.
    """
    import papermill as pm

    from .notebook import check_parameters

    params = _merge(profile.get("common", {}), (profile.get("notebooks") or {}).get(name, {}))
    params = apply_overrides(params, list(overrides))
    declared = pm.inspect_notebook(str(root / NOTEBOOKS / f"{name}.ipynb"))
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ConfigError(f"{name} has no parameter(s) {unknown}; its parameters are "
                          f"{sorted(declared)}")
    check_parameters(name, params)
    return params


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
                  progress: bool = True, announce: bool = False) -> list[NotebookResult]:
    """Execute notebooks with papermill; see the module docstring. ``progress`` draws terminal
    bars; ``announce`` prints a plain line as each notebook starts (for logs, not terminals)."""
    profile = load_profile(profile_name)
    # validate everything first: a typo in the last notebook must not cost the first ones
    planned = [(name, notebook_parameters(root, name, profile, overrides)) for name in names]
    manifest = _read_manifest(root)
    results = []
    bar = _bar(len(planned), "notebooks", progress)
    for name, params in planned:
        out = root / EXECUTED / f"{name}.ipynb"
        fp = fingerprint(root, name, params)
        previous = manifest.get(name, {})
        if (not force and previous.get("fingerprint") == fp and previous.get("status") == "ok"
                and out.is_file()):
            results.append(NotebookResult(name, "skipped", str(out), 0.0))
        else:
            if bar is not None:
                bar.set_description(name)
            if announce:
                print(f"running {name} ...", file=sys.stderr, flush=True)
            result = execute_notebook(root, name, params, out, progress)
            manifest[name] = {"fingerprint": fp, "status": result.status,
                              "profile": profile_name, "seconds": result.seconds,
                              "parameters": params}
            _write_manifest(root, manifest)
            results.append(result)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return results


def execute_notebook(root: Path, name: str, params: dict[str, Any], out: Path,
                     progress: bool = False) -> NotebookResult:
    """Run notebook ``name`` with papermill into ``out`` (written whole, its traceback kept when
    a cell fails); the status says whether it ran. No manifest, no skipping: see run_notebooks."""
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.stem}.{os.getpid()}.running.ipynb")
    start = time.perf_counter()
    error = ""
    with _progress_channel(progress) as env:
        try:
            with _environment(env):
                pm.execute_notebook(str(root / NOTEBOOKS / f"{name}.ipynb"), str(tmp_out),
                                    parameters=params, cwd=str(root), progress_bar=False,
                                    log_output=False, kernel_name="python3",
                                    # the kernel's own log (a plain-TCP notice on every start)
                                    # is noise here; cell errors still land in the notebook
                                    extra_arguments=["--log-level=ERROR"])
            status = "ok"
        except pm.PapermillExecutionError as err:
            status, error = "failed", f"{err.ename}: {err.evalue}"
        except Exception as err:  # kernel died, timeout...
            status, error = "failed", f"{type(err).__name__}: {err}"
    if tmp_out.is_file():
        os.replace(tmp_out, out)  # the executed copy, with its traceback when it failed
    return NotebookResult(name, status, str(out), time.perf_counter() - start, error)


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
        lines.append(line)
    failed = sum(r.status == "failed" for r in results)
    lines.append(f"{len(results) - failed} of {len(results)} notebooks ok"
                 + (f", {failed} failed" if failed else ""))
    return "\n".join(lines)

