"""Papermill alone re-runs a page: an executed page with only the given parameters changed, a
template with a profile's parameters file (``mimlib parameters``); what it was given is checked
before any computation, as ``mimlib run`` checks it.

The real calls run on a copy of the project without ../shared beside it (no data: every number
comes from the committed store, and the store must be left exactly as it was)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import yaml

from mimlib.companion.run.orchestrate import notebook_parameters
from mimlib.companion.book.pages import notebook_names
from mimlib.companion.book.parameters_cell import fold_values
from mimlib.companion.book.profiles import load_profile, profile_names

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "cifar10-cpu"
STORE = Path("results") / PROFILE / "store"
PAGE = "07_ablation_k"


def _parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


# --------------------------------------------------------------------------- no kernel

@pytest.mark.parametrize("profile", profile_names())
def test_folded_parameters_cell_sets_exactly_what_the_page_ran_with(profile, caplog) -> None:
    """The executed page's parameters cell, run as Python, gives the template's defaults with
    the profile's values on top (what papermill's injected cell gave), and papermill's own
    reading of that cell finds every parameter without a warning."""
    from papermill.translators import PythonTranslator

    settings = load_profile(profile)
    for name in notebook_names(ROOT):
        cell = _parameters_cell(nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", 4))
        params = notebook_parameters(ROOT, name, settings)
        expected: dict = {}
        exec(cell.source, {}, expected)
        expected.update(params)
        folded: dict = {}
        cell.source = fold_values(cell.source, params)
        exec(cell.source, {}, folded)
        assert folded == expected, name
        with caplog.at_level(logging.WARNING, logger="papermill"):
            assert {p.name for p in PythonTranslator.inspect(cell)} == set(expected), name
        assert not caplog.records, name


@pytest.mark.parametrize("name", notebook_names(ROOT))
def test_every_parameter_of_a_template_reaches_start(name: str) -> None:
    """start() checks what papermill was given against the parameters it receives, so the
    notebook passes it every parameter of its cell (else a real one would be refused)."""
    import ast

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", 4)
    declared: dict = {}
    exec(_parameters_cell(nb).source, {}, declared)
    calls = [node for cell in nb.cells if cell.cell_type == "code"
             and "parameters" not in cell.metadata.get("tags", [])
             for node in ast.walk(ast.parse(cell.source))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "start"]
    assert len(calls) == 1, "one start() call"
    page = [k for k in calls[0].keywords if k.arg == "page"]
    assert len(page) == 1 and page[0].value.value == name, "start() is told its own page"
    keywords = [k for k in calls[0].keywords if k.arg != "page"]
    passed = [a.id for a in calls[0].args] + [k.arg for k in keywords]
    assert passed[:4] == ["profile", "setup", "mim", "store"]
    assert sorted(passed) == sorted(declared)
    assert all(k.arg == getattr(k.value, "id", None) for k in keywords)


def test_the_docs_show_both_papermill_forms() -> None:
    for doc in ("README.md", "book/intro.md"):
        text = " ".join((ROOT / doc).read_text().split())
        assert 'papermill book/executed/07_ablation_k.ipynb out.ipynb -y "ks: [1, 5]"' in text
        assert "mimlib parameters 07 --profile cifar10-cpu > 07.yml" in text
        assert "papermill notebooks/07_ablation_k.ipynb out.ipynb -f 07.yml" in text


def test_parameters_command_prints_what_mimlib_run_would_use(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "mimlib.companion.run.cli", "parameters", "07", "-p", "ks",
                          "[1, 5]"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"# {PAGE} with profile {PROFILE}")
    expected = notebook_parameters(ROOT, PAGE, load_profile(PROFILE), [("ks", "[1, 5]")])
    assert yaml.safe_load(out.stdout) == expected  # papermill -f reads it as YAML
    bad = subprocess.run([sys.executable, "-m", "mimlib.companion.run.cli", "parameters", "07", "-p", "ks",
                          "[0]"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "whole numbers >= 1" in bad.stderr and not bad.stdout


# --------------------------------------------------------------------------- real papermill

@dataclass
class Clone:
    root: Path
    env: dict[str, str]
    store: dict[str, str]  # every file of the committed store and its SHA-256

    def snapshot(self) -> dict[str, str]:
        return _snapshot(self.root / STORE)


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Clone:
    """A copy of the project with no data beside it, and page 07 as ``mimlib run`` executes it
    (the profile's parameters, every number from the committed store)."""
    if not (ROOT / STORE).is_dir() or not any((ROOT / STORE).glob("*/*/record.json")):
        pytest.skip(f"the committed store {STORE} is absent")
    base = tmp_path_factory.mktemp("papermill")
    copy = base / "clone"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".venv", ".git", "_build", "executed", "failed", "exports", "cache", "__pycache__",
        "*.egg-info", ".pytest_cache"))
    assert not (base / "shared").exists()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MIMLIB_RESULTS", "MIMLIB_EXPORTS", "MIMLIB_EXPORTS_STAGING",
                        "MIMLIB_NOTEBOOK", "MIMLIB_USAGE")}
    env.update(MIMLIB_DATA=str(base / "no-data"), MIMLIB_CACHE=str(base / "decoded"),
               MIMLIB_PROGRESS="0")
    run = subprocess.run([sys.executable, "-m", "mimlib.companion.run.cli", "run", PAGE, "--no-book",
                          "--quiet"], cwd=copy, env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    return Clone(copy, env, _snapshot(copy / STORE))


def _papermill(clone: Clone, source: str, out: Path, *args: str,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "papermill", source, str(out), *args,
                           "--no-progress-bar"], cwd=clone.root, env=env or clone.env,
                          capture_output=True, text=True, timeout=900)


def _table(nb: nbformat.NotebookNode, name: str) -> tuple[str, list[str]]:
    """A table the page displayed (its MyST block): its caption line and its rows."""
    return _table_block(nb, name)[:2]


def _table_block(nb: nbformat.NotebookNode, name: str) -> tuple[str, list[str], str]:
    """A table's caption line, its rows and the re-run line under it."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown", "")
            if f"\n:name: {name}\n" in text:
                lines = text.splitlines()
                rows = [line for line in lines if line.startswith("|")]
                rerun = next((line for line in lines if line.startswith("<small>Re-run: ")), "")
                return lines[0], rows[2:], rerun  # header and separator left out
    raise AssertionError(f"no table {name} in the notebook")


def _rerun_commands(line: str) -> list[str]:
    return line.split("`")[1::2]  # the code spans: mimlib run, then the papermill form


def _chosen_ks() -> list[int]:
    """Two of the k the profile ran (both in the committed store): [1, 5] today."""
    ks = sorted(notebook_parameters(ROOT, PAGE, load_profile(PROFILE))["ks"])
    return [ks[0], ks[len(ks) // 2]]


def _check_rerun(clone: Clone, out: Path, exports: Path) -> None:
    """The re-run shows the page's rows for the chosen k and no other k, with the page's
    provenance (same profile, data, model, store); nothing was computed."""
    page = nbformat.read(clone.root / "book" / "executed" / f"{PAGE}.ipynb", 4)
    rerun = nbformat.read(out, 4)
    page_caption, page_rows = _table(page, "tbl-ablation-k")
    caption, rows = _table(rerun, "tbl-ablation-k")
    params = notebook_parameters(ROOT, PAGE, load_profile(PROFILE))
    assert set(rows) <= set(page_rows), "every number comes from the page's own runs"
    # one row per k and batch-norm mode: the k left out take that many rows each
    left_out = (len(params["ks"]) - 2) * len(params["bn_modes"])
    assert len(rows) == len(page_rows) - left_out, "only the chosen k are shown"
    def provenance(line: str) -> str:  # the caption's runs in readers' words
        return line[line.index("*("):line.index(")*") + 2]

    def spec(csv: Path) -> str:  # the CSV's first line: the runs' spec, less the parameters' id
        return csv.read_text().splitlines()[0].split(", id=")[0]

    assert provenance(caption) == provenance(page_caption)  # same profile, data, model
    assert provenance(caption).endswith(f"profile {PROFILE})*")
    book_csv = clone.root / "book" / "exports" / PROFILE / "tbl-ablation-k.csv"
    assert spec(exports / PROFILE / "tbl-ablation-k.csv") == spec(book_csv)  # and store
    assert spec(book_csv).startswith(f"# profile {PROFILE}; data=")
    # under the table, the commands that re-run what this run did: the page as mimlib run made
    # it names the profile alone; papermill's run (no MIMLIB_NOTEBOOK: the template tells
    # start() its page) names the page and the k it was given
    ks = _chosen_ks()
    assert _rerun_commands(_table_block(page, "tbl-ablation-k")[2]) == [
        f"mimlib run {PAGE} --profile {PROFILE}",
        f"mimlib parameters {PAGE} --profile {PROFILE} > params.yml && papermill "
        f"notebooks/{PAGE}.ipynb out.ipynb -f params.yml"]
    run, papermill_form = _rerun_commands(_table_block(rerun, "tbl-ablation-k")[2])
    assert run == f"mimlib run {PAGE} --profile {PROFILE} -p ks '[{ks[0]}, {ks[1]}]'"
    assert papermill_form.startswith(f"mimlib parameters {PAGE} --profile {PROFILE} -p ks "
                                     f"'[{ks[0]}, {ks[1]}]' > params.yml && papermill ")
    assert clone.snapshot() == clone.store, "the store changed: something was computed"
    assert not any(Path(clone.env["MIMLIB_CACHE"]).rglob("*.*")), "data were decoded"


@pytest.mark.slow
@pytest.mark.book
def test_executed_page_reruns_with_only_the_given_parameter_changed(clone, tmp_path) -> None:
    book_csv = clone.root / "book" / "exports" / PROFILE / "tbl-ablation-k.csv"
    before = book_csv.read_bytes()
    out = tmp_path / "out.ipynb"
    ks = _chosen_ks()
    proc = _papermill(clone, f"book/executed/{PAGE}.ipynb", out, "-y", f"ks: {ks}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_rerun(clone, out, clone.root / "book" / "exports" / "rerun")
    # the book's own files stay those of its page (only mimlib run replaces them)
    assert book_csv.read_bytes() == before
    # and the re-run ran with the page's parameters, ks alone changed
    params = nbformat.read(out, 4).metadata.papermill.parameters
    assert dict(params) == {"ks": ks}


@pytest.mark.slow
@pytest.mark.book
def test_template_runs_with_a_profiles_parameters_file(clone, tmp_path) -> None:
    listing = subprocess.run([sys.executable, "-m", "mimlib.companion.run.cli", "parameters", PAGE,
                              "--profile", PROFILE], cwd=clone.root, env=clone.env,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    params = tmp_path / "params.yml"
    params.write_text(listing.stdout)
    out, exports = tmp_path / "out.ipynb", tmp_path / "exports"
    proc = _papermill(clone, f"notebooks/{PAGE}.ipynb", out, "-f", str(params), "-y",
                      f"ks: {_chosen_ks()}", env={**clone.env, "MIMLIB_EXPORTS": str(exports)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_rerun(clone, out, exports)


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.parametrize("source,args,message", [
    ("executed", ["-y", "ks: [0, 5]"], "whole numbers >= 1"),
    ("executed", ["-y", "mim: {k: 0}"], "k (the number of images per mix)"),
    ("executed", ["-p", "nonsense", "1"], "has no parameter(s) ['nonsense']"),
    ("executed", ["-p", "ks", "[1, 5]"], "papermill's -p passes text"),
    ("executed", ["-p", "profile", "smoke"], "profile is the label"),
    ("template", ["-p", "profile", PROFILE], "mimlib parameters NN --profile NAME"),
])
def test_bad_parameters_fail_before_any_computation(clone, tmp_path, source, args,
                                                    message) -> None:
    path = f"book/executed/{PAGE}.ipynb" if source == "executed" else f"notebooks/{PAGE}.ipynb"
    out = tmp_path / "out.ipynb"
    proc = _papermill(clone, path, out, *args)
    assert proc.returncode != 0
    code = [c for c in nbformat.read(out, 4).cells if c.cell_type == "code"]
    failed = [i for i, c in enumerate(code)
              if any(o.get("output_type") == "error" for o in c.outputs)]
    assert len(failed) == 1, "one cell failed"
    cell = code[failed[0]]
    assert "start(" in cell.source, "the first cell after the parameters fails"
    error = next(o for o in cell.outputs if o.get("output_type") == "error")
    assert error.ename == "ConfigError" and message in error.evalue, error.evalue
    assert all(c.execution_count is None for c in code[failed[0] + 1:]), "nothing ran after"
    assert clone.snapshot() == clone.store
