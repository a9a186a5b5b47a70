"""MIM with other detectors: the score codes keep every rank statistic, the chapter's entries
are keyed apart from float32 ones, and its readings follow the intervals whichever way.

The readings are driven by stand-in runs whose per-image scores come from known distributions
(an arm whose ID scores sit higher is better by a known amount); the codes and keys by a real
experiment on the embedded synthetic data.
"""

import hashlib
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mimlib.companion.analysis import other_detectors as od
from mimlib.companion.results.experiment import Experiment
from mimlib.companion.results.setup import Setup
from mimlib.companion.results.score_codes import (FLOAT32, QUANTILE8, check_format, code_error,
                                          encode)
from mimlib.companion.results.store import Store
from mimlib.detectors import NEWER_DETECTORS, TABLE1_DETECTORS
from mimlib.errors import ConfigError
from mimlib.metrics import ood_metrics

NEAR, FAR = ("tinyimagenet_crop", "tinyimagenet_resize"), ("mnist",)
SETS = (*NEAR, *FAR, "gaussian")


# --------------------------------------------------------------------------- score codes

def _scores(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"__id__": rng.normal(1.0, 1.0, 3000), "near": rng.normal(0.6, 1.0, 2500),
            "far": rng.normal(-1.0, 0.5, 2000)}


def test_codes_are_one_byte_in_the_scores_order_across_sets() -> None:
    scores = _scores()
    codes = encode(scores, QUANTILE8)
    assert all(c.dtype == np.uint8 for c in codes.values())
    pooled = np.concatenate(list(scores.values()))
    coded = np.concatenate(list(codes.values())).astype(int)
    order = np.argsort(pooled)
    assert (np.diff(coded[order]) >= 0).all()  # monotone: a higher score never a lower code
    assert coded.min() == 0 and coded.max() == 255
    # equal-count bins: each holds 1/256 of the pooled scores, to within one score
    counts = np.bincount(coded, minlength=256)
    assert counts.max() - counts.min() <= 2


def test_the_codes_auroc_is_within_the_recorded_error_of_the_float_one() -> None:
    scores = _scores(1)
    codes = encode(scores, QUANTILE8)
    error = code_error(scores, codes)
    for name in ("near", "far"):
        exact = ood_metrics(scores["__id__"], scores[name])["auroc"]
        coded = ood_metrics(codes["__id__"], codes[name])["auroc"]
        assert abs(exact - coded) <= error
    assert 0 < error < 3e-4  # 256 bins over 7500 scores: ties cost little


def test_float32_is_stored_as_computed_and_bad_input_is_refused() -> None:
    scores = _scores()
    kept = encode(scores, FLOAT32)
    assert kept["near"].dtype == np.float32
    assert np.array_equal(kept["near"], scores["near"].astype(np.float32))
    assert code_error(scores, kept) < 1e-6
    with pytest.raises(ConfigError, match="quantile-uint8"):
        check_format("float16")
    with pytest.raises(ConfigError, match="NaN"):
        encode({"__id__": np.array([0.1, np.nan]), "x": np.zeros(2)}, QUANTILE8)


def test_coded_entries_are_keyed_apart_and_keep_the_float_metrics(tmp_path) -> None:
    setup = Setup(ood_sets=("synthetic_textures", "gaussian"), pretrain_epochs=1,
                  train_limit=600, test_limit=300, ood_limit=300, device="cpu")
    exp = Experiment(setup, Store(tmp_path / "store"))
    base = exp.base_model()
    plain = exp.scores_entry(base, "KNN")
    coded = exp.scores_entry(base, "KNN", QUANTILE8)
    assert "stored_as" not in exp.detector_config(base, "KNN")  # float32 keys as before
    assert exp.detector_config(base, "KNN", QUANTILE8)["stored_as"] == QUANTILE8
    assert plain.path != coded.path
    assert plain.record["result"]["rows"] == coded.record["result"]["rows"]  # float metrics
    arrays = coded.arrays()
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.uint8)}
    error = coded.record["result"]["stored_as"]["max_auroc_error"]
    for row in coded.record["result"]["rows"]:
        from_codes = ood_metrics(arrays["__id__"], arrays[row["ood"]])["auroc"]
        assert abs(from_codes - row["auroc"]) <= error + 1e-12
    assert exp.per_image_scores(base, "KNN")["__id__"].dtype == np.float32


def test_the_chapter_keeps_float32_where_other_chapters_store_it() -> None:
    assert od.stored_as("MSP", starting_model=False) == QUANTILE8  # the weights scored here
    assert all(od.stored_as(d, starting_model=True) == FLOAT32 for d in TABLE1_DETECTORS)
    assert all(od.stored_as(d, starting_model=True) == QUANTILE8 for d in NEWER_DETECTORS)
    assert od.stored_as("Energy", starting_model=False) == QUANTILE8


# --------------------------------------------------------------------------- readings

class _Entry:
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self._arrays = arrays
        self.record = {"result": {"rows": [
            {"ood": s, **ood_metrics(arrays["__id__"], arrays[s])} for s in SETS],
            "stored_as": {"max_auroc_error": 1e-5}}}

    def arrays(self) -> dict[str, np.ndarray]:
        return self._arrays


class _Exp:
    """Just enough of an Experiment: runs named by their parameters, each detector's ID
    scores drawn around ``shift(arm, detector)`` (OOD scores are N(0, 1))."""

    def __init__(self, shift) -> None:
        self.setup = Setup(arch="resnet20", device="cpu")
        self.shift = shift

    def derive(self, setup=None, settings=None):
        return self

    def base_model(self):
        return SimpleNamespace(params={"arm": "start"})

    def mim_model(self, base, **params):
        return SimpleNamespace(params={"arm": "control" if params.get("lam") == 0 else "mim",
                                       "seed": params["seed"]})

    def evaluate(self, run, detectors=("MSP",)):
        return SimpleNamespace(rows=[{"ood": s} for s in SETS])

    def scores_entry(self, run, detector, stored_as=FLOAT32):
        def draw(*key):
            digest = hashlib.sha256(repr((sorted(run.params.items()), detector, key)).encode())
            return np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))
        arrays = {"__id__": draw("id").normal(self.shift(run.params["arm"], detector), 1, 800),
                  **{s: draw(s).normal(0, 1, 700) for s in SETS}}
        return _Entry(arrays)

    def stored(self, kind, config, compute):
        return SimpleNamespace(record={"result": compute()[0]})


def _frame(shift, detectors=("MSP", "Energy", "KNN")):
    return od.compare_detectors(_Exp(shift), {}, detectors=detectors, protocols=["corrected"],
                              seeds=[0, 1, 2])


def test_each_difference_reads_higher_lower_or_not_resolved_by_its_interval() -> None:
    means = {("start", "MSP"): 0.5, ("mim", "MSP"): 1.2, ("control", "MSP"): 0.6,
             ("start", "Energy"): 0.6, ("mim", "Energy"): 1.6, ("control", "Energy"): 0.6,
             ("start", "KNN"): 1.0, ("mim", "KNN"): 0.3, ("control", "KNN"): 0.3}
    frame = _frame(lambda arm, d: means[(arm, d)])
    near = frame[frame["group"] == "near"].set_index("detector")
    assert near.loc["Energy", "vs_start_reading"] == od.BETTER
    assert near.loc["Energy", "vs_msp_reading"] == od.BETTER  # Energy on MIM beats MSP on it
    assert near.loc["KNN", "vs_start_reading"] == od.WORSE
    assert near.loc["KNN", "vs_control_reading"] == od.NOT_RESOLVED  # the same mean
    assert near.loc["KNN", "msp_vs_reading"] == od.BETTER  # MIM + MSP beats KNN on the start
    assert pd_isna(near.loc["MSP", "vs_msp"])  # MSP against itself: not computed
    noise = frame[frame["group"] == "noise"]
    assert "vs_start" not in noise or noise["vs_start"].isna().all()  # noise: means only
    for _, row in near.iterrows():
        assert row["vs_start_low"] <= row["vs_start"] <= row["vs_start_high"]
    assert frame.attrs["code_error"] == pytest.approx(1e-5)
    assert frame.attrs["retrain_drift"] == 0  # the stand-in scores the same weights


def test_the_verdict_counts_what_the_intervals_say() -> None:
    means = {("start", "MSP"): 0.5, ("mim", "MSP"): 1.2, ("control", "MSP"): 0.6,
             ("start", "Energy"): 0.6, ("mim", "Energy"): 1.6, ("control", "Energy"): 0.6,
             ("start", "KNN"): 1.0, ("mim", "KNN"): 0.3, ("control", "KNN"): 0.3}
    sentence = od.verdict_sentence(_frame(lambda arm, d: means[(arm, d)]), "corrected")
    assert sentence.startswith("Corrected protocol, 3 fine-tuning seeds")
    assert "starting model is higher for 2, lower for 1, not resolved for 0 of 3" in sentence
    assert "Energy beats MSP" in sentence
    assert "highest mean AUROC: Energy" in sentence
    quiet = od.verdict_sentence(_frame(lambda arm, d: 0.8), "corrected")
    assert "no detector beats MSP by a resolved margin" in quiet
    assert "not resolved for 3 of 3" in quiet


def test_the_chapter_needs_msp_and_known_detectors() -> None:
    with pytest.raises(ValueError, match="MSP"):
        _frame(lambda arm, d: 0.5, detectors=("Energy",))
    with pytest.raises(ConfigError, match="unknown detector"):
        _frame(lambda arm, d: 0.5, detectors=("MSP", "Mahalanobis++"))


def test_the_figure_draws_both_differences_per_group_with_newer_detectors_marked() -> None:
    from mimlib.companion.analysis import plots

    means = {("start", "MSP"): 0.5, ("mim", "MSP"): 1.2, ("control", "MSP"): 0.6,
             ("start", "Energy"): 0.6, ("mim", "Energy"): 1.6, ("control", "Energy"): 0.6,
             ("start", "KNN"): 1.0, ("mim", "KNN"): 0.3, ("control", "KNN"): 0.3}
    rows = od.forest_rows(_frame(lambda arm, d: means[(arm, d)]))
    assert len(rows) == 3 * 2 * 2  # detectors x drawn comparisons x judged groups
    assert set(rows["protocol"]) == {"corrected"}
    fig = plots.detector_forest(rows, newer=("KNN",))
    axes = fig.axes
    assert len(axes) == 4
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["MSP", "Energy", "KNN *"]
    assert axes[0].get_title(loc="left") == ("near-OOD, corrected protocol\n"
                                             "on MIM − on the starting model")
    two = od.forest_rows(pd.concat([_frame(lambda arm, d: means[(arm, d)]),
                                    _frame(lambda arm, d: means[(arm, d)]).assign(
                                        protocol="faithful")]))
    assert len(plots.detector_forest(two).axes) == 8  # a row of panels per protocol and group
    table = od.difference_table(_frame(lambda arm, d: means[(arm, d)]), "corrected")
    energy = table[table["detector"] == "Energy"].set_index("OOD group")
    assert table.loc[0, "on MIM − MSP on MIM"] == ""  # MSP's own row
    assert energy.loc["near-OOD", "on MIM − MSP on MIM"].startswith("+")
    assert energy.loc["noise (OE paper)", "on MIM − MSP on MIM"] == ""  # noise: means only


def pd_isna(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def test_the_leaderboard_stands_beside_ours_with_a_mim_row_it_lacks() -> None:
    means = {("start", "MSP"): 0.5, ("mim", "MSP"): 1.2, ("control", "MSP"): 0.6,
             ("start", "KNN"): 1.0, ("mim", "KNN"): 0.3, ("control", "KNN"): 0.3}
    frame = _frame(lambda arm, d: means[(arm, d)], detectors=("MSP", "KNN"))
    board = od.beside_leaderboard(frame, "corrected").set_index("detector")
    assert list(board.index) == ["MSP", "KNN", "GEN", "ReAct", "SCALE", "ASH", "OE", "MIM (MSP)"]
    assert board.loc["KNN", "OpenOOD near"] == pytest.approx(0.9064)
    assert board.loc["OE", "OpenOOD far"] == pytest.approx(0.96)
    near = frame[(frame["group"] == "near")].set_index("detector")
    assert board.loc["KNN", "here, starting model, near"] == near.loc["KNN", "start"]
    assert board.loc["MIM (MSP)", "here, MIM model, far"] > 0.7
    assert np.isnan(board.loc["MIM (MSP)", "OpenOOD near"])  # not on the leaderboard
    assert np.isnan(board.loc["GEN", "here, MIM model, near"])  # not run here


def test_the_claims_page_pastes_the_verdict_with_a_link_to_the_chapter() -> None:
    frame = _frame(lambda arm, d: 0.8)
    html = od.verdict_html(frame, ["corrected"], link="16_other_detectors.html")
    assert html.count("<p>") == 2 and 'href="16_other_detectors.html"' in html
    assert "Corrected protocol" in html
    assert "href" not in od.verdict_html(frame, ["corrected"])
