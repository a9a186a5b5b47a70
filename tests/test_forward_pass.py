"""One forward pass for every evaluation: the companion's helpers score through
``Experiment.representations`` (the setup's device, eval precision, layout and batch size) and
leave the model where it was."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mimlib import build_model
from mimlib.companion.analysis.mixed_images import msp_of
from mimlib.companion.analysis.tables import per_class_accuracy
from mimlib.companion.results.experiment import Experiment
from mimlib.companion.results.setup import Setup
from mimlib.detectors import Representations


def test_the_experiment_forward_pass_uses_the_setups_eval_settings(monkeypatch) -> None:
    seen = {}

    def fake_extract(model, images, **kwargs):
        seen.update(kwargs)
        return "reps"

    monkeypatch.setattr("mimlib.companion.results.scoring.extract", fake_extract)
    setup = Setup(device="cpu", eval_batch_size=77, eval_precision="bf16",
                  eval_layout="channels_last")
    assert Experiment(setup).representations(None, None) == "reps"
    assert seen == {"batch_size": 77, "device": "cpu", "precision": "bf16",
                    "layout": "channels_last"}


def test_per_class_accuracy_scores_through_the_experiments_forward_pass() -> None:
    calls = []
    labels = torch.tensor([0, 0, 1, 1])
    logits = torch.tensor([[1.0, 0], [0, 1.0], [0, 1.0], [0, 1.0]])

    def representations(model, images):
        calls.append((model, images))
        return Representations(torch.zeros(4, 2), logits, labels)

    test_set = SimpleNamespace(classes=("cat", "dog"))
    exp = SimpleNamespace(id_test=test_set, eval_data_key=lambda: {},
                          representations=representations,
                          stored=lambda kind, config, compute: SimpleNamespace(
                              record={"result": compute()[0]}))
    run = SimpleNamespace(recipe={"r": 1}, model="the model")
    table = per_class_accuracy(exp, run)
    assert calls == [("the model", test_set)]
    assert table["accuracy"].tolist() == [0.5, 1.0]


def test_msp_of_leaves_the_model_on_its_device() -> None:
    model = build_model("small_cnn", 6)
    model.cpu = lambda: pytest.fail("msp_of moved the model")  # the old side effect
    msp = msp_of(model, torch.rand(5, 3, 32, 32), batch_size=2)
    assert msp.shape == (5,) and np.all((msp >= 1 / 6 - 1e-6) & (msp <= 1))
