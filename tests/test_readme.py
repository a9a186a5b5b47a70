"""The README's two commands are the ones CI and users run, and the documented code runs."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

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
    from mimlib.companion.book.pages import notebook_names
    from mimlib.companion.book.profiles import profile_names

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


def _on_folders(snippet: str, dataset: Path, other: Path) -> str:
    """A documented snippet on the folders of :func:`_image_folders`: its paths and the
    pretraining length replaced, nothing else."""
    code = (snippet.replace("/data/my_dataset", str(dataset))
            .replace("/data/unrelated_images", str(other))
            .replace("/data/other_images", str(other))
            .replace("epochs=100", "epochs=2"))
    assert code != snippet
    return code


def _check_metrics(printed: str) -> None:
    """The last line a snippet printed is ood_metrics' dict, every value a fraction."""
    metrics = eval(printed.strip().splitlines()[-1])
    assert set(metrics) == {"auroc", "aupr_in", "aupr_out", "fpr95"}
    assert all(0 <= v <= 1 for v in metrics.values())


def test_the_documented_code_for_your_own_model_runs_as_written(tmp_path, capsys) -> None:
    """The README's and the book's snippets, on small image folders (paths and the pretraining
    length replaced, nothing else)."""
    dataset, other = _image_folders(tmp_path)
    readme = _python_blocks(ROOT / "README.md")[0]
    own_loop, own_model = (_python_blocks(ROOT / "book" / "own_model.md")[i] for i in (0, 1))
    for snippet in (readme, own_loop):
        exec(compile(_on_folders(snippet, dataset, other), "snippet", "exec"), {})
        _check_metrics(capsys.readouterr().out)

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


def _name(distribution: str) -> str:
    """A distribution's name as pip compares them (PEP 503: lower case, runs of -_. as -)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def test_the_companion_checks_for_the_book_extra_it_is_part_of() -> None:
    """mimlib.companion's list of what it needs is the `book` extra of pyproject.toml, and each
    module it looks for is one its distribution installs."""
    import tomllib
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement

    from mimlib.companion import REQUIRED, missing_packages

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {_name(d) for _, d in REQUIRED} == {_name(Requirement(r).name) for r in extra["book"]}
    installed_by = packages_distributions()
    assert all(_name(d) in {_name(n) for n in installed_by[m]} for m, d in REQUIRED)
    assert missing_packages() == []  # this venv has the extra: the companion imported


#: What only the companion uses (the `book` extra, mimlib.companion.REQUIRED): a package of it
#: may come with `pip install mimlib` only where torch, torchvision or pytorch-ood require it
#: themselves (filelock: torch's own dependency).
_METHOD_DEPENDENCIES = {"torch", "torchvision", "pytorch-ood"}
#: What torch's Linux wheel requires for the GPU, 4 GB of CUDA libraries and Triton: resolved,
#: but not installed into the light venv again (:func:`_cuda_libraries`). The rest pip resolves
#: is installed.
_GPU_RUNTIME = re.compile(r"nvidia-.*|cuda-.*|triton")


def _cuda_libraries() -> str:
    """The folders of the CUDA libraries this interpreter's torch links against (its wheel's
    nvidia-* packages; none for a CPU build), as LD_LIBRARY_PATH: the light venv's torch is the
    same wheel, which cannot import without them, and they are torch's, not the method's."""
    import torch

    site = Path(torch.__file__).resolve().parents[1]
    return ":".join(str(lib) for lib in sorted(site.glob("nvidia/*/lib")))


def _run(args: list, timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    """``args`` (paths allowed) as a process, its output captured as text."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def _pip(venv: Path, *args, timeout: float = 600) -> str:
    """pip of ``venv`` with this machine's pip configuration; its stdout, or fail with its
    error."""
    done = _run([venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", *args],
                timeout)
    assert done.returncode == 0, f"pip {' '.join(map(str, args))}:\n{done.stderr[-3000:]}"
    return done.stdout


def _local_torch_wheels(venv: Path, pins: list[str]) -> list[Path]:
    """The wheel files on this machine's disk that pip would install for ``pins`` (torch and
    torchvision at requirements/pins.txt's versions), or skip: the test installs the method
    against them offline, it does not download 550 MB of torch."""
    report = venv.parent / "torch-report.json"
    try:
        done = _run([venv / "bin" / "python", "-m", "pip", "install", "--dry-run", "--no-deps",
                     "--ignore-installed", "--quiet", "--timeout", "20", "--report", report,
                     *pins], 180)
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip took over 3 minutes to find {' '.join(pins)}: no local wheel")
    if done.returncode != 0:
        pytest.skip(f"pip finds no {' '.join(pins)} here:\n{done.stderr[-1000:]}")
    urls = [item["download_info"]["url"] for item in json.loads(report.read_text())["install"]]
    remote = [url for url in urls if not url.startswith("file://")]
    if remote:
        pytest.skip(f"{', '.join(remote)} is not on this machine's disk; the light-install test "
                    "installs torch from a local wheel")
    return [Path(unquote(urlparse(url).path)) for url in urls]


@pytest.mark.slow
def test_the_method_alone_installs_and_runs_the_readme_snippet(tmp_path: Path) -> None:
    """`pip install mimlib`, no extra, into a fresh venv: pip brings none of the companion's
    packages (except what torch itself requires), the README's "MIM on your own model and data"
    runs there on image folders with `import mimlib` alone, and the companion, the `mimlib`
    command with it, refuses to start, naming the extra that installs it (issue 31).

    torch and torchvision are installed from their local wheels without dependencies, and the
    method's other dependencies at the versions pip resolves through requirements/lock.txt
    (torch's CUDA libraries are this interpreter's, on LD_LIBRARY_PATH); the project from a copy
    of its files (not editable)."""
    from packaging.requirements import Requirement

    from mimlib.companion import REQUIRED

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], 120, check=True)  # the base Python, bare
    pins = [line for line in (ROOT / "requirements" / "pins.txt").read_text().splitlines()
            if re.match(r"torch(vision)?==", line)]
    # --no-compile: bytecode for the modules a run imports, not all of torch's (half the time)
    _pip(venv, "install", "--no-deps", "--no-index", "--no-compile", "--quiet",
         *_local_torch_wheels(venv, pins))

    project = tmp_path / "project"  # what a wheel is built from: pip builds nothing in the repo
    shutil.copytree(ROOT / "mimlib", project / "mimlib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "requirements/lock.txt"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, project / name)
    lock = project / "requirements" / "lock.txt"

    # what `pip install mimlib` installs on a machine with nothing installed
    report = tmp_path / "report.json"
    _pip(venv, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", report,
         "-c", lock, project)
    resolved = {_name(item["metadata"]["name"]): item["metadata"]
                for item in json.loads(report.read_text())["install"]}
    requirers: dict[str, set[str]] = {}
    for name, meta in resolved.items():
        for line in meta.get("requires_dist", []):
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                requirers.setdefault(_name(req.name), set()).add(name)
    companion = {_name(d) for _, d in REQUIRED}
    brought = companion & set(resolved)
    assert all(requirers[d] and requirers[d] <= _METHOD_DEPENDENCIES for d in brought), \
        {d: requirers[d] for d in brought}

    rest = [f"{name}=={meta['version']}" for name, meta in sorted(resolved.items())
            if name not in {"mimlib", "torch", "torchvision"} and not _GPU_RUNTIME.fullmatch(name)]
    _pip(venv, "install", "--no-deps", "--no-compile", "--quiet", project, *rest)
    listed = {_name(p["name"]) for p in json.loads(_pip(venv, "list", "--format", "json"))}
    assert "mimlib" in listed and listed & companion == brought
    assert not listed & {"submitit", "pyyaml", "papermill", "jupyter-book", "matplotlib",
                         "pandas", "seaborn", "scikit-learn"}

    dataset, other = _image_folders(tmp_path / "folders")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(_on_folders(_python_blocks(ROOT / "README.md")[0], dataset, other))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MIMLIB_PROGRESS"] = "1"  # the training loops' progress bars: tqdm, a base dependency
    env["LD_LIBRARY_PATH"] = ":".join(filter(None, (_cuda_libraries(),
                                                    env.get("LD_LIBRARY_PATH"))))
    python = venv / "bin" / "python"
    ran = _run([python, snippet], 600, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    _check_metrics(ran.stdout)

    missing = [d for _, d in REQUIRED if _name(d) not in listed]
    companion_import = "import mimlib; print(mimlib.__file__); import mimlib.companion"
    refusals = [_run(command, 120, cwd=tmp_path, env=env)
                for command in ([python, "-c", companion_import], [venv / "bin" / "mimlib"])]
    assert Path(refusals[0].stdout.strip()).is_relative_to(venv)  # the installed copy ran
    for refused in refusals:  # `import mimlib.companion`, and the `mimlib` command
        assert refused.returncode != 0
        message = refused.stderr.strip().splitlines()[-1]
        assert message.startswith("ImportError: mimlib.companion needs the 'book' extra")
        assert f"{', '.join(missing)} are not installed" in message
        assert 'pip install "mimlib[book]"' in message
