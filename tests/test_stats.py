"""The intervals behind the verdicts: exact AUROC on weighted draws, and the same intervals as
scipy.stats.bootstrap gives with a plain (unvectorised) statistic on the same draws."""

import numpy as np
import pytest
from scipy import stats

from mimlib.companion.analysis.stats import (BATCH, _PlacedAUROC, auroc_difference, mean_difference,
                                   seed_difference)
from mimlib.metrics import ood_metrics


def _arm(rng, shift, n_id=40, sizes=(30, 25)):
    return {"__id__": rng.normal(shift, 1, n_id).round(1),  # rounded: ties happen
            **{f"set{i}": rng.normal(0, 1, m).round(1) for i, m in enumerate(sizes)}}


def test_auroc_of_a_weighted_draw_is_the_auroc_of_the_drawn_images() -> None:
    rng = np.random.default_rng(0)
    arm = _arm(rng, 0.5)
    placed = _PlacedAUROC(arm["__id__"], arm["set0"])
    id_draw, ood_draw = rng.integers(0, 40, 40), rng.integers(0, 30, 30)
    id_w = np.bincount(id_draw, minlength=40)[None]
    ood_w = np.bincount(ood_draw, minlength=30)[None]
    expected = ood_metrics(arm["__id__"][id_draw], arm["set0"][ood_draw])["auroc"]
    assert placed(id_w, ood_w)[0] == pytest.approx(expected, abs=1e-12)
    assert placed(np.ones((1, 40)), np.ones((1, 30)))[0] == pytest.approx(
        ood_metrics(arm["__id__"], arm["set0"])["auroc"], abs=1e-12)


def test_the_paired_interval_is_scipys_on_the_same_draws() -> None:
    rng = np.random.default_rng(1)
    a = [_arm(rng, 0.8) for _ in range(3)]
    b = [_arm(rng, 0.3) for _ in range(3)]
    sets = ["set0", "set1"]
    ours = auroc_difference(a, b, sets, n_resamples=300, seed=7)

    def plain(seed_draw, id_draw, d0, d1):
        draws = {"set0": d0.astype(int), "set1": d1.astype(int)}
        per_seed = [np.mean([ood_metrics(arm[s]["__id__"][id_draw.astype(int)],
                                         arm[s][n][draws[n]])["auroc"] for n in sets])
                    for arm in (a, b) for s in seed_draw.astype(int)]
        half = len(per_seed) // 2
        return np.mean(per_seed[:half]) - np.mean(per_seed[half:])

    data = (np.arange(3), np.arange(40), np.arange(30), np.arange(25))
    theirs = stats.bootstrap(data, plain, paired=False, vectorized=False, n_resamples=300,
                             batch=BATCH, method="percentile", random_state=np.random.default_rng(7))
    direct = np.mean([np.mean([ood_metrics(x["__id__"], x[n])["auroc"] for n in sets])
                      - np.mean([ood_metrics(y["__id__"], y[n])["auroc"] for n in sets])
                      for x, y in zip(a, b)])
    assert ours.estimate == pytest.approx(direct, abs=1e-12)
    assert ours.low == pytest.approx(theirs.confidence_interval.low, abs=1e-9)
    assert ours.high == pytest.approx(theirs.confidence_interval.high, abs=1e-9)
    assert ours.seeds == 3 and ours.side() == 1  # a clear gain: the interval excludes zero


def test_an_arm_without_seeds_pairs_with_every_seed_and_equal_arms_are_unresolved() -> None:
    rng = np.random.default_rng(2)
    a = [_arm(rng, 0.5) for _ in range(2)]
    same = auroc_difference(a, a, ["set0"], n_resamples=200)
    assert same.estimate == 0 and same.low == 0 and same.high == 0 and same.side() == 0
    baseline = [_arm(rng, 0.5)]
    mixed = auroc_difference(a, baseline, ["set0", "set1"], n_resamples=200)
    assert mixed.seeds == 2 and mixed.low < mixed.estimate < mixed.high
    noise = auroc_difference([_arm(rng, 0.0)], [_arm(rng, 0.0)], ["set0"], n_resamples=300)
    assert noise.side() == 0  # two draws of the same distribution: not resolved
    with pytest.raises(ValueError, match="paired"):
        auroc_difference(a, [_arm(rng, 0)] * 3, ["set0"])


def test_accuracy_differences_are_bootstrapped_over_seeds_and_images() -> None:
    rng = np.random.default_rng(3)
    better = [(rng.random(200) < 0.9).astype(float) for _ in range(3)]
    worse = [(rng.random(200) < 0.6).astype(float) for _ in range(3)]
    d = mean_difference(better, worse, n_resamples=400)
    assert d.estimate == pytest.approx(np.mean([x.mean() - y.mean()
                                                for x, y in zip(better, worse)]))
    assert d.side() == 1 and d.seeds == 3

    def plain(seed_draw, image_draw):
        return np.mean([better[s][image_draw.astype(int)].mean()
                        - worse[s][image_draw.astype(int)].mean() for s in seed_draw.astype(int)])

    theirs = stats.bootstrap((np.arange(3), np.arange(200)), plain, paired=False,
                             vectorized=False, n_resamples=400, method="percentile",
                             batch=BATCH, random_state=np.random.default_rng(0))
    assert d.low == pytest.approx(theirs.confidence_interval.low, abs=1e-12)
    assert d.high == pytest.approx(theirs.confidence_interval.high, abs=1e-12)


def test_seed_differences_take_students_t() -> None:
    d = seed_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert (d.estimate, d.low, d.high) == pytest.approx((2.0, 2 - half, 2 + half))
    assert d.side() == 0  # 2 +- 2.48: three seeds this spread do not resolve it
    one = seed_difference([0.5], [0.1])
    assert one.side() == 0 and one.seeds == 1


def test_a_stored_interval_is_the_fresh_bootstrap_and_is_read_not_redone(tmp_path,
                                                                          monkeypatch) -> None:
    from mimlib.companion.analysis import stats as stats_module
    from mimlib.companion.results.experiment import Experiment
    from mimlib.companion.results.setup import Setup
    from mimlib.companion.results.store import Store

    rng = np.random.default_rng(4)
    a = [_arm(rng, 0.8) for _ in range(3)]
    b = [_arm(rng, 0.3) for _ in range(3)]
    exp = Experiment(Setup(ood_sets=("gaussian",), test_limit=50, ood_limit=50, device="cpu"),
                     Store(tmp_path), profile="unit-test")
    stored = stats_module.stored_auroc_difference(exp, a, b, ["set0", "set1"], n_resamples=300,
                                                  seed=7)
    assert stored == auroc_difference(a, b, ["set0", "set1"], n_resamples=300, seed=7)
    better = [(rng.random(200) < 0.9).astype(float) for _ in range(3)]
    worse = [(rng.random(200) < 0.6).astype(float) for _ in range(3)]
    accuracy = stats_module.stored_mean_difference(exp, better, worse, n_resamples=400)
    assert accuracy == mean_difference(better, worse, n_resamples=400)
    assert len(exp.store.entries("interval")) == 2

    def no_bootstrap(*args, **kwargs):
        raise AssertionError("a stored interval was bootstrapped again")

    monkeypatch.setattr(stats_module, "auroc_difference", no_bootstrap)
    monkeypatch.setattr(stats_module, "mean_difference", no_bootstrap)
    assert stats_module.stored_auroc_difference(exp, a, b, ["set0", "set1"], n_resamples=300,
                                                seed=7) == stored
    assert stats_module.stored_mean_difference(exp, better, worse, n_resamples=400) == accuracy
    # other inputs, another resample count or other sets are other entries
    with pytest.raises(AssertionError, match="bootstrapped again"):
        stats_module.stored_auroc_difference(exp, a, b, ["set0"], n_resamples=300, seed=7)
    with pytest.raises(AssertionError, match="bootstrapped again"):
        stats_module.stored_auroc_difference(exp, a, b, ["set0", "set1"], n_resamples=301,
                                             seed=7)
    shifted = [{**arm, "set0": arm["set0"] + 0.1} for arm in a]
    with pytest.raises(AssertionError, match="bootstrapped again"):
        stats_module.stored_auroc_difference(exp, shifted, b, ["set0", "set1"],
                                             n_resamples=300, seed=7)
