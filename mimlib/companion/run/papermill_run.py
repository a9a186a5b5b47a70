"""Executing one notebook with papermill: its executed page, its exports and its store usage.

Only a run that succeeds replaces the page and moves its exports into ``book/exports/``; a
failed one lands in ``book/failed/`` with its traceback. This is the unit of work that
:mod:`mimlib.companion.run.executors` runs, here or as a job.

While it runs, a notebook's page so far, its staged exports and its store usage lie beside the
executed page, named by the run's host and process: removed when it ends (SIGTERM included, see
:mod:`mimlib.companion.run.interrupt`), and, when it was killed, by the next run on that host once
that process is dead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .interrupt import sigterm_as_interrupt
from ..book.pages import FAILED, NOTEBOOKS
from ..book.parameters_cell import fold_parameters
from ...progress import progress_channel
from ..analysis.report import exports_dir
from ..results.store import USAGE_ENV, Store, writer_id

#: what a run leaves beside the page while it runs: the page so far, the exports staged, the store
#: entries used; named by its writer (host-PID; pages of versions before hosts by PID alone)
_RUNNING = re.compile(r"\.(?:staging-)?[^.]+\.(?:(?P<host>.+)-)?(?P<pid>\d+)\."
                      r"(?:running\.ipynb|[a-z0-9_]+(?:\.usage)?)")


@dataclass
class NotebookResult:
    """What happened to one notebook in a run."""

    name: str
    status: str  # "ok", "skipped" (unchanged) or "failed"
    executed: str
    seconds: float
    error: str = ""
    log: str = ""  # the job's log, when it ran as a job (mimlib.companion.run.executors)


def execute_notebook(root: Path, name: str, params: dict[str, Any], out: Path,
                     progress: bool = False, record_usage: bool = True) -> NotebookResult:
    """Run notebook ``name`` with papermill into ``out``; the status says whether it ran.

    Only a notebook that succeeds replaces ``out``, moves the files it exported into
    ``book/exports/`` and, with ``record_usage``, records which store entries it used: a
    failed one is kept in ``book/failed/`` with its traceback, and the last good page, exports
    and records stay as they were. No manifest, no skipping: see
    :func:`mimlib.companion.run.orchestrate.run_notebooks`.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out.parent)
    with sigterm_as_interrupt():
        return _execute(root, name, params, out, progress, record_usage)


def _execute(root: Path, name: str, params: dict[str, Any], out: Path, progress: bool,
             record_usage: bool) -> NotebookResult:
    """:func:`execute_notebook`'s run, its temporary files removed however it ends."""
    import papermill as pm  # imported when a notebook runs: papermill is slow to import

    tmp_out = out.with_name(f".{out.stem}.{writer_id()}.running.ipynb")
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{name}.{writer_id()}.", dir=out.parent))
    used = staging.with_name(staging.name + ".usage")  # the store entries it reads
    start = time.perf_counter()
    error = ""
    try:
        with progress_channel(progress) as env:
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
            fold_parameters(tmp_out, params)
            os.replace(tmp_out, out)  # the executed copy, with its traceback when it failed
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        used.unlink(missing_ok=True)
        tmp_out.unlink(missing_ok=True)
    return NotebookResult(name, status, str(out), time.perf_counter() - start, error)


def _remove_leftovers(folder: Path) -> None:
    """Remove what runs that are gone left in ``folder`` (killed, or stopped before SIGTERM
    was handled): only what names this host (or no host) and a process that is not alive, so
    a run going on, here or on another host sharing the folder, keeps its files."""
    for path in folder.glob(".*"):
        match = _RUNNING.fullmatch(path.name)
        if (match and match["host"] in (None, socket.gethostname())
                and not _alive(int(match["pid"]))):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether a process of this number runs on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
