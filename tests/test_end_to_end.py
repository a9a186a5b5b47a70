"""End to end on the embedded synthetic world: pretrain, MIM-fine-tune, score, through the store."""

import numpy as np
import pytest

from mimlib.specs import SYNTHETIC_OOD_SETS
from mimlib.companion.results.experiment import Experiment
from mimlib.companion.results.setup import Setup
from mimlib.companion.results.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Experiment:
    setup = Setup(id_data="synthetic", ood_sets=SYNTHETIC_OOD_SETS, arch="small_cnn",
                  pretrain_epochs=8, pretrain_lr=0.05, device="cpu")
    return Experiment(setup, Store(tmp_path_factory.mktemp("store")))


def test_a_short_mim_fine_tune_raises_the_mean_msp_auroc(experiment: Experiment) -> None:
    base = experiment.base_model()
    before = experiment.evaluate(base)
    assert before.accuracy > 0.95
    mim = experiment.mim_model(base, steps=200, k=5, lr=1e-3, eval_every=100)
    after = experiment.evaluate(mim)
    assert after.accuracy > 0.95  # MIM keeps the classifier
    gain = after.mean("MSP") - before.mean("MSP")
    assert gain > 0.015, (before.rows, after.rows)
    # the logged curve: measured at steps 0, 100 and 200, and step 0 is the base model
    assert [e["step"] for e in mim.evals] == [0, 100, 200]
    assert mim.evals[0]["mean_auroc"] == pytest.approx(before.mean("MSP"), abs=1e-9)
    assert mim.evals[-1]["mean_auroc"] == pytest.approx(after.mean("MSP"), abs=1e-9)
    # the mixed images end up near the uniform distribution (MSP 1/6 for six classes)
    assert mim.log[0]["msp_out"] > mim.log[-1]["msp_out"] and mim.log[-1]["msp_out"] < 0.35


def test_stored_results_are_reused_and_carry_provenance(experiment: Experiment) -> None:
    base = experiment.base_model()
    mim = experiment.mim_model(base, steps=200, k=5, lr=1e-3, eval_every=100)  # from the store
    evaluation = experiment.evaluate(mim)
    record = evaluation.record
    assert record["provenance"]["data_sha256"]["id_test"] == experiment.id_test.sha256()
    assert record["environment"]["versions"]["torch"]
    assert record["config"]["model"] == mim.recipe
    scores = evaluation.scores
    assert scores["MSP/__id__"].shape == (len(experiment.id_test),)
    assert np.all((scores["MSP/synthetic_textures"] > 0) & (scores["MSP/synthetic_textures"] <= 1))
    kinds = {e.record["kind"] for e in experiment.store.entries()}
    assert kinds == {"pretrain", "finetune", "scores"}


def test_a_per_set_curve_holds_each_sets_auroc_and_serves_the_mean_curve(
        experiment: Experiment) -> None:
    base = experiment.base_model()
    per_set = experiment.mim_model(base, steps=20, k=5, lr=1e-3, eval_every=10,
                                   per_set_curve=True)
    names = list(experiment.ood)
    for point in per_set.evals:
        values = [point[f"auroc[{name}]"] for name in names]
        assert point["mean_auroc"] == pytest.approx(np.mean(values), abs=1e-12)
    # asking for the mean curve alone reuses the stored run: no second training
    created = per_set.record["created"]
    assert experiment.mim_model(base, steps=20, k=5, lr=1e-3,
                                eval_every=10).record["created"] == created
    # a mean-only curve does not serve a per-set request: the run is repeated with it
    mean_only = experiment.mim_model(base, steps=21, k=5, lr=1e-3, eval_every=10)
    assert "auroc[" not in "".join(mean_only.evals[0])
    again = experiment.mim_model(base, steps=21, k=5, lr=1e-3, eval_every=10,
                                 per_set_curve=True)
    assert {f"auroc[{name}]" for name in names} <= set(again.evals[0])
