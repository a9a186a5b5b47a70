"""The mimlib command and the notebook orchestration: validation, skipping, failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from mimlib.companion.run import cli
from mimlib.errors import ConfigError, MimlibError
from mimlib.companion.run.book_build import build_book
from mimlib.companion.run.orchestrate import run_notebooks, summary
from mimlib.companion.book.profiles import apply_overrides, load_profile, parse_value

ROOT = Path(__file__).resolve().parents[1]


def _mimlib(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mimlib.companion.run.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_profiles_are_listed_and_parsed_as_data() -> None:
    out = _mimlib("profiles")
    assert out.returncode == 0 and "smoke" in out.stdout and "offline-cifar10" in out.stdout
    scratch = load_profile("paper-scratch")  # extends paper
    assert scratch["common"]["setup"]["base"] == "pretrain"
    assert scratch["common"]["setup"]["id_data"] == "cifar10"


@pytest.mark.parametrize("args,message", [
    (["run", "99_nothing"], "unknown notebook"),
    (["run", "07", "-p", "ks", "[0, 5]"], "whole numbers >= 1"),
    (["run", "07", "-p", "nonsense", "1"], "has no parameter"),
    (["run", "07", "-p", "setup.arch", "vgg16"], "unknown architecture"),
    (["run", "07", "-p", "mim.k", "0"], "k (the number of images per mix)"),
    (["run", "09", "-p", "lrs", "[-0.1]"], "numbers > 0"),
    (["run", "04", "-p", "detectors", "[MSP, OpenMax]"], "unknown detector"),
    (["reproduce", "--profile", "nope"], "unknown profile"),
])
def test_bad_parameters_exit_non_zero_before_any_work(tmp_path, args, message) -> None:
    store = tmp_path / "store"
    profile = [] if "--profile" in args else ["--profile", "smoke"]
    out = subprocess.run([sys.executable, "-m", "mimlib.companion.run.cli", *args, *profile, "--no-book",
                          "--quiet"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "MIMLIB_RESULTS": str(store)})
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and out.stderr.startswith("mimlib: error:")
    assert not store.exists()


def test_values_are_parsed_as_data_never_as_code() -> None:
    assert parse_value("[1, 2]") == [1, 2] and parse_value("{a: 1}") == {"a": 1}
    assert parse_value("1e-4") == 1e-4 and parse_value("[1e-5, 2.5E3]") == [1e-5, 2500.0]
    assert parse_value("__import__('os').system('echo hi')") == "__import__('os').system('echo hi')"
    with pytest.raises(ConfigError):
        parse_value("!!python/object/apply:os.system ['echo hi']")
    params = apply_overrides({"setup": {"arch": "x"}, "ks": [1]},
                             [("setup.arch", "resnet18"), ("ks", "[2, 3]")])
    assert params == {"setup": {"arch": "resnet18"}, "ks": [2, 3]}
    with pytest.raises(ConfigError, match="not a dict"):
        apply_overrides({"ks": [1]}, [("ks.x", "1")])


def _tiny_project(root: Path) -> Path:
    """A project root with two tiny notebooks: one fine, one that fails."""
    (root / "notebooks").mkdir(parents=True)
    params = ('profile = "x"\nsetup = {}\nmim = {}\nstore = None')
    for name, body in (("01_ok", "value = len(setup)\nprint('ok', value)"),
                       ("02_fails", "raise ValueError('boom: a deliberate failure')")):
        nb = new_notebook()
        cell = new_code_cell(params)
        cell.metadata["tags"] = ["parameters"]
        nb.cells = [cell, new_code_cell(body)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, root / "notebooks" / f"{name}.ipynb")
    return root


@pytest.mark.slow
def test_unchanged_notebooks_are_skipped_and_failures_do_not_stop_the_others(tmp_path) -> None:
    root = _tiny_project(tmp_path)
    first = run_notebooks(root, ["02_fails", "01_ok"], "smoke", progress=False)
    assert [r.status for r in first] == ["failed", "ok"]
    assert "boom" in first[0].error
    text = summary(first)
    assert "failed" in text and str(root / "book" / "failed" / "02_fails.ipynb") in text
    assert not (root / "book" / "executed" / "02_fails.ipynb").exists()  # no page of a failure
    executed = nbformat.read(root / "book" / "failed" / "02_fails.ipynb", 4)
    assert any(o.get("ename") == "ValueError" for c in executed.cells for o in c.get("outputs", []))
    again = run_notebooks(root, ["02_fails", "01_ok"], "smoke", progress=False)
    assert [r.status for r in again] == ["failed", "skipped"]  # failures are retried
    forced = run_notebooks(root, ["01_ok"], "smoke", progress=False, force=True)
    assert [r.status for r in forced] == ["ok"]
    changed = run_notebooks(root, ["01_ok"], "smoke", [("setup.seed", "7")], progress=False)
    assert [r.status for r in changed] == ["ok"]  # other parameters: run again
    manifest = json.loads((root / "book" / "executed" / "manifest.json").read_text())
    assert manifest["01_ok"]["parameters"]["setup"]["seed"] == 7
    assert not list((root / "book" / "executed").glob(".*running*"))


@pytest.mark.slow
def test_a_failed_notebook_is_named_and_the_book_is_not_built(tmp_path, capsys) -> None:
    """A strict book build after a failed chapter would fail too, burying the cause under
    jupyter-book's output: the command names the failure and skips the build instead."""
    root = _tiny_project(tmp_path)
    assert cli.main(["--root", str(root), "run", "02_fails", "--profile", "smoke"]) == 1
    out, err = capsys.readouterr()
    assert "ValueError: boom" in out
    assert "book: not built, 1 notebook(s) failed (02_fails)" in err
    # not a terminal (captured, as in a log): a plain line per notebook, no progress bars
    assert err.startswith("running 02_fails ...\n") and "%|" not in err
    assert not (root / "_build").exists()


def test_main_returns_two_on_user_errors(capsys) -> None:
    assert cli.main(["--root", str(ROOT), "run", "nope", "--no-book", "--profile", "smoke"]) == 2
    assert "unknown notebook" in capsys.readouterr().err


@pytest.mark.book
def test_a_book_that_links_a_missing_export_fails_with_what_to_do(tmp_path) -> None:
    (tmp_path / "_config.yml").write_text('title: t\nexecute:\n  execute_notebooks: "off"\n')
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    page = tmp_path / "intro.md"
    page.write_text("# Intro\n\nThe table: {download}`CSV <table.csv>`.\n")
    assert build_book(tmp_path).is_file()
    (tmp_path / "table.csv").unlink()
    with pytest.raises(MimlibError, match=r"(?s)download file not readable.*reproduce --force"):
        build_book(tmp_path)


def test_a_profile_that_needs_a_gpu_stops_up_front_without_one(tmp_path, monkeypatch) -> None:
    import torch

    from mimlib.companion.book.profiles import check_gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("paper", "paper-scratch", "offline-cifar10"):
        with pytest.raises(ConfigError, match=r"needs a GPU.*--allow-cpu"):
            check_gpu(name, load_profile(name), allow_cpu=False)
        check_gpu(name, load_profile(name), allow_cpu=True)  # asked for: goes on
    check_gpu("cifar10-cpu", load_profile("cifar10-cpu"), allow_cpu=False)
    import contextlib
    import io
    import shutil

    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["--root", str(tmp_path), "reproduce", "--profile", "paper", "--quiet"])
    assert code == 2 and "needs a GPU" in err.getvalue()
    assert not (tmp_path / "book").exists()  # stopped before anything ran
