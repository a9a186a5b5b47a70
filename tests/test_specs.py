"""Data and base specs are parsed once (issue 22): what they name in store keys and on pages
must not change with the parsing.

``tests/data/spec_keys.json`` holds what every setup of the profiles (and each kind of base)
gave before specs were parsed in one place: data identities, the data and model parts of store
keys, the items a run fetches, the labels readers see. Regenerate it only for a deliberate
change of keys: ``python tests/test_specs.py``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from mimlib import pins
from mimlib.companion.results import catalog
from mimlib.errors import ConfigError
from mimlib.companion.results.experiment import Experiment
from mimlib.companion.results.keys import eval_data_key, train_data_key
from mimlib.companion.results.setup import Setup
from mimlib.companion.analysis.labels import readers_label
from mimlib.models import weights_display
from mimlib.companion.run.needs import items_of
from mimlib.companion.book.profiles import load_profile, profile_parameters
from mimlib.companion.results.setups import setups_of
from mimlib.specs import BaseSpec, DataSpec
from mimlib.companion.results.store import Store, config_key

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "spec_keys.json"
PROFILES = ("cifar10-cpu", "cifar10-cpu-lossless", "smoke", "paper", "paper-scratch")
#: each kind of base, with the architecture it loads into
BASES = {"pretrain": "wrn40_2", "published": "wrn40_2", "registry:resnet20/cifar10": "resnet20",
         "registry:densenet100/cifar10": "densenet100", "registry:wrn-40-2/cifar10/oe": "wrn40_2",
         "checkpoint:/nowhere/weights/model.pt": "small_cnn"}
PIN = "#sha256=" + "ab" * 32
#: specs of each form, pinned where they read files (an unpinned one is added per test)
DATA_SPECS = ("svhn", "mnist", "tinyimages300k", "synthetic_shapes", f"mnist:/x/mnist-test{PIN}",
              f"digits=mnist:/x/mnist-test{PIN}", f"own=crop:/x/pics.tar.gz{PIN}",
              f"resize:/x/pics{PIN}", f"folder:/x/data.tar.xz{PIN}", f"folder:~/data{PIN}")


def _setup_keys(setup: Setup, store: Store) -> dict[str, Any]:
    exp = Experiment(setup, store)
    out: dict[str, Any] = {"train": train_data_key(setup), "eval": eval_data_key(setup),
                           "specs": {spec: [pins.identity(spec), pins.display(spec),
                                            catalog.spec_display(spec), readers_label(spec)]
                                     for spec in (setup.id_data, *setup.ood_sets)},
                           "base": [weights_display(setup.base), readers_label(setup.base)]}
    if setup.base != "pretrain":
        loaded = exp.loaded_model()
        out["loaded"] = loaded.recipe
        recipe = exp.mim_recipe(loaded)  # layout "auto": written when it was a timing
        out["mim_key"] = config_key("finetune", recipe if setup.layout != "auto" else
                                    {k: v for k, v in recipe.items() if k != "train"})
    return out


def _spec_keys(spec: str) -> list[str]:
    return [pins.identity(spec), pins.display(spec), catalog.spec_display(spec),
            readers_label(spec)]


def _observed(store: Store, folder: Path) -> dict[str, Any]:
    """Keys and labels of every setup of every notebook of the profiles, of each base and of
    each form of data spec (``folder``: an unpinned one, named by its files' checksum)."""
    (folder / "pics").mkdir()
    for name in ("a.png", "t10k-images-idx3-ubyte.gz"):  # mnist:PATH names its image file
        (folder / "pics" / name).write_bytes(b"not an image, but bytes to hash")
    out: dict[str, Any] = {f"spec/{spec}": _spec_keys(spec) for spec in DATA_SPECS}
    for kind in ("crop", "resize", "folder", "mnist"):
        out[f"spec/{kind}:unpinned"] = _spec_keys(f"{kind}:{folder / 'pics'}")[::2]
    paper_oe = {**profile_parameters(load_profile("paper"), "05_oe_comparison"),
                "published_oe": True}
    out["paper/published_oe/needs"] = sorted([item.name, item.checksum, item.path.name]
                                             for item, _ in items_of(paper_oe)[0])
    for name in PROFILES:
        profile = load_profile(name)
        for notebook in sorted(profile.get("notebooks") or {}):
            params = profile_parameters(profile, notebook)
            for i, setup in enumerate(setups_of(params)):
                out[f"{name}/{notebook}/{i}"] = _setup_keys(setup, store)
            items, problems = items_of(params)
            out[f"{name}/{notebook}/needs"] = [sorted(
                [item.name, item.checksum, item.path.name] for item, _ in items), problems]
    cifar10 = Setup(id_data="cifar10", ood_sets=("svhn", "gaussian"), arch="wrn40_2")
    for base, arch in BASES.items():
        out[f"base/{base}"] = _setup_keys(dataclasses.replace(cifar10, base=base, arch=arch),
                                          store)
    return out


def test_a_spec_is_parsed_once_into_its_parts_and_gives_back_its_text() -> None:
    spec = DataSpec.parse(f"digits=mnist:~/mnist-test{PIN[:8]}{PIN[8:].upper()} ", "ood")
    assert (spec.kind, spec.where, spec.name, spec.pin) == ("mnist", "~/mnist-test", "digits",
                                                            "ab" * 32)
    assert spec.text == str(spec) == f"digits=mnist:~/mnist-test{PIN}"
    assert spec.source_path == Path("~/mnist-test").expanduser() / "t10k-images-idx3-ubyte.gz"
    assert DataSpec.parse("svhn").reads_files is False
    assert BaseSpec.parse("registry:resnet20/cifar10") == BaseSpec("registry", "resnet20/cifar10")
    assert BaseSpec.parse("checkpoint:/a/b.pt").text == "checkpoint:/a/b.pt"
    assert not BaseSpec.parse("pretrain").loaded and BaseSpec.find("svhn") is None


@pytest.mark.parametrize("text, role, accepted", [
    ("imagenet", "id", "'folder:PATH'"), ("fashion_mnist", "ood", "'crop:PATH'"),
    ("crop:/x", "id", "'folder:PATH'"), ("own=folder:/x", "id", "no 'NAME='"),
    ("gaussian" + PIN, "ood", "take a pin"), ("resize:/x#sha256=abc", "ood", "64 hex digits")])
def test_a_wrong_data_spec_says_what_is_accepted(text: str, role: str, accepted: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(accepted)):
        DataSpec.parse(text, role)


@pytest.mark.parametrize("text", ["registry:", "checkpoint", "scratch", None])
def test_a_wrong_base_says_what_is_accepted(text: Any) -> None:
    with pytest.raises(ConfigError, match="'pretrain', 'published', 'registry:KEY'"):
        BaseSpec.parse(text)


def _results_only_needs() -> set[str]:
    """The needs entries this machine cannot compare: a notebook whose profile data are absent
    (no ../shared beside a clone) runs from the committed results and needs nothing."""
    return {f"{name}/{notebook}/needs" for name in PROFILES
            for notebook, params in ((n, profile_parameters(load_profile(name), n))
                                     for n in sorted(load_profile(name).get("notebooks") or {}))
            if any(setup.results_only for setup in setups_of(params))}


def test_specs_name_data_and_bases_as_before(tmp_path: Path) -> None:
    observed = json.loads(json.dumps(_observed(Store(tmp_path / "store"), tmp_path)))
    golden = json.loads(GOLDEN.read_text())
    for key in _results_only_needs():  # the golden file was written with ../shared present
        observed.pop(key, None)
        golden.pop(key, None)
    assert observed == golden


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        observed = _observed(Store(Path(folder) / "store"), Path(folder))
    GOLDEN.write_text(json.dumps(observed, indent=1, sort_keys=True) + "\n")
    sys.exit(0)
