"""The source notebooks: valid, clean, parameterised, and every profile's parameters accepted."""

import ast
from pathlib import Path

import nbformat
import pytest

from mimlib.companion.book.pages import notebook_names
from mimlib.companion.book.parameters import check_parameters
from mimlib.companion.book.profiles import load_profile, profile_names, profile_parameters
from mimlib.companion.run.orchestrate import notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
NAMES = notebook_names(ROOT)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_valid_clean_and_starts_with_its_parameters(name: str) -> None:
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)  # cell ids included: a missing one becomes an error in nbformat 6
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and code[0] is tagged[0], "one parameters cell, the first code cell"
    assert all(not c.outputs and c.execution_count is None for c in code), "commit sources only"
    defaults: dict = {}
    exec(tagged[0].source, {}, defaults)  # plain data, by the notebooks' own convention
    check_parameters(name, defaults)


@pytest.mark.parametrize("profile", profile_names())
def test_every_profile_gives_every_notebook_parameters_it_accepts(profile: str) -> None:
    settings = load_profile(profile)
    for name in NAMES:
        notebook_parameters(ROOT, name, settings)  # raises ConfigError naming the bad one


def test_captions_name_the_overrides_an_ablation_runs_with(tmp_path) -> None:
    from mimlib.companion.book.session import start

    setup = {"id_data": "synthetic", "ood_sets": ["gaussian"], "arch": "small_cnn",
             "base": "pretrain", "protocol": "corrected", "device": "cpu"}
    plain = start("smoke", setup, {"k": 5}, str(tmp_path / "store")).provenance
    ablated = start("smoke", setup, {"k": 5}, str(tmp_path / "store"),
                    ablation={"steps": 40}).provenance
    # the caption's words name data, model, protocol, the ablation's overrides and profile;
    # the spec tuple they stand for stays with the files
    assert plain == "synthetic world, small CNN, corrected protocol; SMOKE PROFILE (synthetic " \
                    "data, not comparable with the paper)"
    assert ablated.startswith("synthetic world, small CNN, corrected protocol, ablation runs "
                              "with steps = 40; SMOKE PROFILE")
    assert plain.spec.startswith("SMOKE PROFILE") and "mim={k: 5}" in plain.spec
    assert "ablation" not in plain.spec
    assert "mim={k: 5}, ablation={steps: 40}, id=" in ablated.spec
    assert not (tmp_path / "store").exists()  # starting a page computes nothing


def test_notes_are_myst_admonitions(tmp_path, monkeypatch) -> None:
    import IPython.display

    from mimlib.companion.book.session import start

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    setup = {"id_data": "synthetic", "ood_sets": ["gaussian"], "arch": "small_cnn",
             "base": "pretrain", "protocol": "corrected", "device": "cpu"}
    start("smoke", setup, {}, str(tmp_path / "store")).note("MIM collapsed.", "warning")
    assert [m.data for m in shown] == [":::{warning}\nMIM collapsed.\n:::"]


@pytest.mark.slow
def test_each_table_of_a_page_with_two_id_sets_is_labelled_by_its_own_runs(
        tmp_path, monkeypatch) -> None:
    """The main table over two ID sets and two protocols: each per-set table names its own data
    and protocol, the tables and figure over all runs name every data set and protocol."""
    import re
    import shutil

    import numpy as np
    from PIL import Image

    from mimlib.companion.run import cli
    from mimlib.data import load_id

    root = tmp_path / "project"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    monkeypatch.setenv("MIMLIB_RESULTS", str(root / "store"))
    monkeypatch.setenv("MIMLIB_EXPORTS", str(root / "exports"))
    other = tmp_path / "other"
    for split in ("train", "test"):  # a second ID set: synthetic images as an image folder
        images = load_id("synthetic", split).subset(120 if split == "train" else 60, seed=3)
        for i, (img, y) in enumerate(zip(images.images, images.labels)):
            folder = other / split / images.classes[int(y)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(img.permute(1, 2, 0).numpy())).save(
                folder / f"{i}.png")
    code = cli.main(["--root", str(root), "run", "04", "--profile", "smoke", "--no-book", "--quiet",
                     "-p", "id_datasets", f"[synthetic, 'folder:{other}']",
                     "-p", "protocols", "[faithful, corrected]", "-p", "detectors", "[MSP]",
                     "-p", "setup.pretrain_epochs", "1", "-p", "setup.train_limit", "240",
                     "-p", "setup.test_limit", "60", "-p", "setup.ood_limit", "60",
                     "-p", "setup.ood_sets", "[gaussian, synthetic_shapes]",
                     "-p", "mim.steps", "3"])
    assert code == 0
    executed = nbformat.read(root / "book" / "executed" / "04_main_table.ipynb", as_version=4)
    captions = [o["data"]["text/markdown"] for c in executed.cells if c.cell_type == "code"
                for o in c.outputs if "text/markdown" in o.get("data", {})]
    per_set = [t for t in captions if t.startswith(("~~~{table} AUROC per", "~~~{table} AUPR"))]
    assert len(per_set) == 8  # two metrics x two ID sets x two protocols
    specs = {"synthetic world": "synthetic", "other": "folder:other"}  # readers' name: spec
    for text in per_set:
        name, protocol = re.search(r"per OOD set, (.+?), (\w+) protocol", text).groups()
        data = specs[name]  # the caption in readers' words, its CSV's first line the spec
        assert f"data={data}, arch=small_cnn, base=pretrain, protocol={protocol}," in \
            _csv_spec(root, text), text
    means = next(t for t in captions if "averaged over each group of OOD sets" in t)
    assert "data=[synthetic, folder:other], arch=small_cnn, base=pretrain, " \
           "protocol=[faithful, corrected]," in _csv_spec(root, means)


def _csv_spec(root: Path, caption: str) -> str:
    """The first line of the CSV a table's caption links (the exports under root)."""
    import re

    name = re.search(r":name: (\S+)", caption).group(1)
    return (root / "exports" / "smoke" / f"{name}.csv").read_text().splitlines()[0]


@pytest.mark.parametrize("name", NAMES)
def test_every_template_runs_the_profile_it_names_as_that_profile_gives_it(name: str) -> None:
    """A template's defaults are the paper profile's (which its ``profile`` names): run with
    papermill alone it runs that profile's setup, never a contradicting one."""
    import papermill as pm

    defaults = {k: ast.literal_eval(v["default"])
                for k, v in pm.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb")).items()}
    assert defaults["profile"] == "paper"
    given = profile_parameters(load_profile("paper"), name)
    assert defaults["setup"] == given["setup"]
    assert defaults["mim"] == given["mim"]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_a_template_imports_from_mimlib_exists(name: str) -> None:
    """A template's ``from mimlib... import X`` lines resolve (a module moved or split must
    take its templates along: a fresh clone's book stops at the first that does not)."""
    import importlib.util

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", 4)
    imports = [node for cell in nb.cells if cell.cell_type == "code"
               for node in ast.walk(ast.parse(cell.source))
               if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mimlib")]
    assert imports, "every template imports mimlib"
    for node in imports:
        module = importlib.import_module(node.module)
        missing = [a.name for a in node.names if not hasattr(module, a.name)
                   and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
        assert not missing, f"{node.module} has no {missing}"
