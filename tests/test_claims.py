"""The claims page: each verdict follows its stated rule from the numbers, whichever way."""

import pandas as pd
import pytest

from mimlib.analysis import claims


class _Exp:
    """Just enough of an Experiment for the rules (the runs themselves are stubbed)."""

    class setup:  # noqa: N801 - attribute access as on a Setup
        device, base, curve_limit = "cpu", "registry:resnet20/cifar10", 2000

    def base_model(self) -> None:
        return None


def _sweep(values: dict[int, float]):
    def fake(exp, base, mim, variants, include_base=True):
        keys = [next(iter(v.values())) for v in variants]
        return pd.DataFrame({"k": keys, "aug_p": keys, "mean_auroc": [values[k] for k in keys]})
    return fake


@pytest.mark.parametrize("by_k,verdict", [
    ({2: 0.80, 5: 0.81, 10: 0.83}, claims.HOLDS),       # the best k > 5 is clearly better
    ({2: 0.80, 5: 0.83, 10: 0.829}, claims.PARTLY),     # a tie within the noise
    ({2: 0.80, 5: 0.85, 10: 0.82}, claims.FAILS),       # clearly worse
])
def test_k_verdicts_follow_the_rule(monkeypatch, by_k, verdict) -> None:
    monkeypatch.setattr(claims, "sweep", _sweep(by_k))
    row = claims.k_above_five(_Exp(), {}, list(by_k), margin=0.005)
    assert row["verdict"] == verdict
    assert f"10: {by_k[10]:.4f}" in row["evidence"]


@pytest.mark.parametrize("off,on,verdict", [
    (0.70, 0.75, claims.HOLDS), (0.70, 0.706, claims.PARTLY), (0.70, 0.69, claims.FAILS)])
def test_augmentation_verdicts_follow_the_rule(monkeypatch, off, on, verdict) -> None:
    monkeypatch.setattr(claims, "sweep", _sweep({0.0: off, 1.0: on}))
    assert claims.augmentation_helps(_Exp(), {}, margin=0.004)["verdict"] == verdict


@pytest.mark.parametrize("curve,verdict", [
    ([0.70, 0.80, 0.81, 0.812], claims.HOLDS),   # flat at the end
    ([0.70, 0.75, 0.78, 0.83], claims.FAILS),    # still rising
    ([0.70, 0.85, 0.80, 0.79], claims.PARTLY),   # peaks early, then falls
    ([0.78, 0.70, 0.65, 0.62], claims.FAILS),    # never better than the start
])
def test_one_epoch_verdicts_follow_the_curve(monkeypatch, curve, verdict) -> None:
    class Run:
        evals = [{"step": 100 * i, "mean_auroc": v, "accuracy": 0.9} for i, v in enumerate(curve)]

    exp = _Exp()
    exp.mim_model = lambda base, eval_every, **mim: Run()
    assert claims.one_epoch_enough(exp, {}, 100, margin=0.005)["verdict"] == verdict
