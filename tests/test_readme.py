"""The README's two commands are the ones CI and users run: keep them true."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_has_the_two_commands_and_ci_runs_the_second() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    reproduce, tests = blocks[0].strip(), blocks[1].strip()
    assert reproduce.startswith("python3 -m venv .venv") and "mimlib reproduce" in reproduce
    assert tests.startswith("python3 -m venv .venv") and "-m pytest" in tests
    assert "torch==2.14.1" in tests and '".[book,test]"' in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert "blocks[1]" in ci  # CI executes the README's second block verbatim


def test_profiles_and_notebooks_named_in_the_docs_exist() -> None:
    from mimlib.orchestrate import notebook_names, profile_names

    assert set(profile_names()) == {"smoke", "paper", "paper-scratch", "offline-cifar10"}
    names = notebook_names(ROOT)
    assert len(names) == 14 and names[0] == "01_mixed_samples"
    toc = (ROOT / "_toc.yml").read_text()
    for name in names:
        assert f"book/executed/{name}" in toc
