"""The source notebooks: valid, clean, parameterised, and every profile's parameters accepted."""

from pathlib import Path

import nbformat
import pytest

from mimlib.notebook import check_parameters
from mimlib.orchestrate import load_profile, notebook_names, notebook_parameters, profile_names

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
    from mimlib.notebook import start

    setup = {"id_data": "synthetic", "ood_sets": ["gaussian"], "arch": "small_cnn",
             "base": "pretrain", "protocol": "corrected", "device": "cpu"}
    plain = start("smoke", setup, {"k": 5}, str(tmp_path / "store")).provenance
    ablated = start("smoke", setup, {"k": 5}, str(tmp_path / "store"),
                    ablation={"steps": 40}).provenance
    assert plain.startswith("SMOKE PROFILE") and "mim={k: 5}" in plain
    assert "ablation" not in plain
    assert "mim={k: 5}, ablation={steps: 40}, id=" in ablated
    assert not (tmp_path / "store").exists()  # starting a page computes nothing


def test_notes_are_myst_admonitions(tmp_path, monkeypatch) -> None:
    import IPython.display

    from mimlib.notebook import start

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    setup = {"id_data": "synthetic", "ood_sets": ["gaussian"], "arch": "small_cnn",
             "base": "pretrain", "protocol": "corrected", "device": "cpu"}
    start("smoke", setup, {}, str(tmp_path / "store")).note("MIM collapsed.", "warning")
    assert [m.data for m in shown] == [":::{warning}\nMIM collapsed.\n:::"]
