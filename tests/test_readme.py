"""The README's two commands are the ones CI and users run, and the documented code runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(path: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_has_the_two_commands_and_ci_runs_the_second() -> None:
    blocks = _bash_blocks(ROOT / "README.md")
    reproduce, tests = blocks[0].strip(), blocks[1].strip()
    assert reproduce.startswith("python3 -m venv .venv") and "mimlib reproduce" in reproduce
    assert tests.startswith("python3 -m venv .venv") and "-m pytest" in tests
    assert "torch==2.14.1" in tests and '".[book,test]"' in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert "blocks[1]" in ci  # CI executes the README's second block verbatim


def test_profiles_and_notebooks_named_in_the_docs_exist() -> None:
    from mimlib.companion.pages import notebook_names
    from mimlib.companion.profiles import profile_names

    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"--profile ([a-z][\w-]+)", readme)) | {"cifar10-cpu", "smoke"}
    assert named <= set(profile_names()), named - set(profile_names())
    names = notebook_names(ROOT)  # every template, in the order of their numbers
    assert names == sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    toc = (ROOT / "_toc.yml").read_text()
    chapters = re.findall(r"book/executed/(\d\d_\w+)", toc)
    assert sorted(chapters) == names  # each once (the book orders them by topic)


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def _image_folders(root: Path) -> tuple[Path, Path]:
    """A three-class data set (train/ and test/, one colour per class) and unrelated images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 8)):
        for c, colour in enumerate(((200, 40, 40), (40, 200, 40), (40, 40, 200))):
            folder = root / "my_dataset" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(colour, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    other = root / "other_images"
    other.mkdir()
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(other / f"{i}.png")
    return root / "my_dataset", other


def test_the_documented_code_for_your_own_model_runs_as_written(tmp_path, capsys) -> None:
    """The README's and the book's snippets, on small image folders (paths and the pretraining
    length replaced, nothing else)."""
    dataset, other = _image_folders(tmp_path)
    readme = _python_blocks(ROOT / "README.md")[0]
    own_loop, own_model = (_python_blocks(ROOT / "book" / "own_model.md")[i] for i in (0, 1))
    for snippet in (readme, own_loop):
        code = (snippet.replace("/data/my_dataset", str(dataset))
                .replace("/data/unrelated_images", str(other))
                .replace("/data/other_images", str(other))
                .replace("epochs=100", "epochs=2"))
        assert code != snippet
        exec(compile(code, "snippet", "exec"), {})
        metrics = eval(capsys.readouterr().out.strip().splitlines()[-1])
        assert set(metrics) == {"auroc", "aupr_in", "aupr_out", "fpr95"}
        assert all(0 <= v <= 1 for v in metrics.values())

    import torch

    import mimlib

    train = mimlib.load_id(f"folder:{dataset}", "train")
    model = mimlib.build_model("small_cnn", train.num_classes)
    before = [p.detach().clone() for p in model.parameters()]
    x = mimlib.normalize(train.images[:16])
    namespace = {"loader": [(x, train.labels[:16])], "model": model,
                 "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}
    exec(compile(own_model.replace('device="cuda"', 'device="cpu"'), "snippet", "exec"), namespace)
    assert torch.isfinite(namespace["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_conda_environment_installs_what_the_readme_installs() -> None:
    """environment.yml (conda cannot be run here) pins the README's torch and torchvision, asks
    for a Python the project supports, and installs the project with the extras it has."""
    from importlib.metadata import metadata

    import yaml

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    installed = metadata("mimlib")
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    version = tuple(int(part) for part in python.removeprefix("python=").split("."))
    lowest = installed["Requires-Python"].removeprefix(">=")
    assert version >= tuple(int(part) for part in lowest.split("."))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    readme_tests = _bash_blocks(ROOT / "README.md")[1]
    pins = [p for p in pip if "==" in p]
    assert pins and all(pin in readme_tests for pin in pins)
    assert "-c requirements/lock.txt" in pip  # the lock's versions, as the README installs
    editable = re.fullmatch(r"-e \.\[(.*)\]", next(p for p in pip if p.startswith("-e")))
    assert editable and set(editable.group(1).split(",")) == {"book", "test"}
    assert {"book", "test"} <= set(installed.get_all("Provides-Extra"))


def _pins(path: Path) -> dict[str, str]:
    """name -> version of each ``name==version`` line of a requirements file (names normalised)."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def test_both_commands_install_through_the_lock_file_and_it_holds_their_pins() -> None:
    """The README's two set-up commands install every package at its version in
    requirements/lock.txt; the lock holds torch and torchvision as the commands pin them,
    Jupyter Book 1 exactly (requirements/pins.txt), and every requirement of pyproject.toml and
    the two extras. That the lock is what its inputs resolve to is `scripts/lock.sh --check`,
    which CI runs (it needs PyPI)."""
    from importlib.metadata import metadata

    from packaging.requirements import Requirement

    lock = _pins(ROOT / "requirements" / "lock.txt")
    held = _pins(ROOT / "requirements" / "pins.txt")
    assert set(held) == {"torch", "torchvision", "jupyter-book"}
    assert all(lock[name] == version for name, version in held.items())
    assert re.fullmatch(r"1\.\d+\.\d+(\.post\d+)?", lock["jupyter-book"])  # not 2: see README
    for block in _bash_blocks(ROOT / "README.md")[:2]:
        assert "-c requirements/lock.txt" in block
        named = dict(re.findall(r"\b(torch|torchvision)==(\S+)", block))
        assert named == {"torch": held["torch"], "torchvision": held["torchvision"]}
    for line in metadata("mimlib").get_all("Requires-Dist"):
        req = Requirement(line)
        needed = req.marker is None or any(req.marker.evaluate({"extra": extra})
                                           for extra in ("", "book", "test"))
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if needed:
            assert name in lock and req.specifier.contains(lock[name], prereleases=True), line
    header = (ROOT / "requirements" / "lock.txt").read_text().splitlines()[:2]
    assert header[1].strip() == "#    scripts/lock.sh"  # the command that refreshes it


def test_the_citation_file_is_valid_cff_and_names_the_paper_and_our_version() -> None:
    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors", "version", "preferred-citation"):
        assert cff.get(key), key  # the fields CFF 1.2 requires, and what a citer needs
    assert cff["cff-version"] == "1.2.0" and all("name" in a or "family-names" in a
                                                  for a in cff["authors"])
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert cff["version"] == version.group(1)
    paper = cff["preferred-citation"]
    assert [a["family-names"] for a in paper["authors"]] == ["Choi", "Na"]
    assert any(i["value"] == "arXiv:2312.15514" for i in paper["identifiers"])
