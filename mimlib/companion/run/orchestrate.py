"""``mimlib reproduce`` and ``mimlib run``: plan the notebooks' runs, skip what is unchanged,
run the rest.

Every notebook's parameters (profile, then ``-p`` overrides) are checked before anything runs;
what the notebooks need is fetched or listed; a notebook whose fingerprint is unchanged is
skipped unless forced (:mod:`mimlib.companion.run.manifest`); the others run where the executor says
(:mod:`mimlib.companion.run.executors`), each through papermill (:mod:`mimlib.companion.run.papermill_run`). A failing
notebook does not stop the others; the summary names it and the executed notebook that holds
its traceback. The book is built afterwards (:mod:`mimlib.companion.run.book_build`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from ...errors import ConfigError
from .executors import ExecutorSettings, run_jobs
from .manifest import fingerprint, read_manifest, record_run
from .needs import prepare
from ..book.parameters import check_parameters
from ..book.pages import EXECUTED, NOTEBOOKS
from .papermill_run import NotebookResult
from ..book.profiles import apply_overrides, check_gpu, load_profile, profile_parameters
from ...progress import terminal_bar


def notebook_parameters(root: Path, name: str, profile: dict[str, Any],
                        overrides: list[tuple[str, str]] = ()) -> dict[str, Any]:
    """The parameters a notebook runs with: profile (common, then its own), then overrides.

    Every name must be a parameter of the notebook, and the values must pass mimlib's checks
    (:func:`mimlib.companion.book.session.check_parameters`), before anything runs.
    """
    import papermill as pm  # imported when parameters are checked: papermill is slow to import

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


def run_notebooks(root: Path, names: list[str], profile_name: str,
                  overrides: list[tuple[str, str]] = (), *, force: bool = False,
                  progress: bool = True, announce: bool = False, allow_cpu: bool = False,
                  executor: ExecutorSettings | None = None) -> list[NotebookResult]:
    """Execute notebooks with papermill; see the module docstring. ``progress`` draws terminal
    bars; ``announce`` prints a plain line as each notebook starts (for logs, not terminals);
    ``allow_cpu`` runs a profile that needs a GPU on a machine without one; ``executor`` says
    where the notebooks run (default: here, one after another; see :mod:`mimlib.companion.run.executors`)."""
    profile = load_profile(profile_name)
    check_gpu(profile_name, profile, allow_cpu)
    # validate everything first: a typo in the last notebook must not cost the first ones
    planned = [(name, notebook_parameters(root, name, profile, overrides)) for name in names]
    manifest = read_manifest(root)
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
    bar = terminal_bar(len(todo), "notebooks", progress and bool(todo))

    def started(name: str) -> None:
        if bar is not None:
            bar.set_description(name)
        if announce:
            print(f"running {name} ...", file=sys.stderr, flush=True)

    def finished(result: NotebookResult) -> None:  # this chapter's record only: see record_run
        record_run(root, result.name, {"fingerprint": prints[result.name],
                                       "status": result.status, "profile": profile_name,
                                       "seconds": result.seconds,
                                       "parameters": parameters[result.name]})
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
