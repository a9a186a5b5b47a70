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


def _sweep(values: dict[float, float | list[float]]):
    """A stand-in sweep: one row per variant and seed, a value per seed (or one for all)."""
    def fake(exp, base, mim, variants, include_base=True, seeds=(0,)):
        keys = [next(iter(v.values())) for v in variants]
        rows = [{"variant": f"k={k}", "k": k, "aug_p": k, "seed": seed,
                 "mean_auroc": (values[k][i] if isinstance(values[k], list) else values[k])}
                for i, seed in enumerate(seeds) for k in keys]
        return pd.DataFrame(rows)
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


def test_the_ablation_verdicts_follow_the_mean_over_seeds(monkeypatch) -> None:
    """Seed 0 alone would say 'holds' (k=10 ahead by 0.02); over three seeds the gap is 0.001."""
    monkeypatch.setattr(claims, "sweep", _sweep({5: [0.80, 0.82, 0.81], 10: [0.82, 0.80, 0.814]}))
    row = claims.k_above_five(_Exp(), {"steps": 130}, [5, 10], margin=0.005, seeds=[0, 1, 2])
    assert row["verdict"] == claims.PARTLY
    assert "5: 0.8100, 10: 0.8113" in row["evidence"]
    assert row["evidence"].endswith("(130 steps per run, the mean of 3 seeds)")
    monkeypatch.setattr(claims, "sweep", _sweep({0.0: [0.70, 0.74], 1.0: [0.75, 0.77]}))
    row = claims.augmentation_helps(_Exp(), {}, margin=0.004, seeds=[0, 1])
    assert row["verdict"] == claims.HOLDS  # +0.04 on the mean
    assert "without augmentation 0.7200, with 0.7600 (+0.0400) (the mean of 2 seeds)" in row[
        "evidence"]


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


def test_the_cost_claim_uses_the_benchmark_of_the_same_model_when_there_is_one(tmp_path):
    """A benchmark of this architecture gives the measured step ratio; one of another model
    only the cost of mixing, set against the stored control's step."""
    import json

    class Run:
        def __init__(self, seconds: float) -> None:
            self.record = {"result": {"seconds": seconds, "log": [{}] * 10}}

    class Exp(_Exp):
        class setup(_Exp.setup):  # noqa: N801
            arch = "resnet20"

        def mim_model(self, base, **params):
            return Run(12.0 if params.get("lam", 1.0) else 5.0)  # 1.2 s, 0.5 s per step

    def bench(name: str, arch: str | None, rows: list[tuple[str, float]]) -> None:
        data = {"device": "cpu: x86_64", "rows": [{"measure": m, "value": v} for m, v in rows]}
        if arch:
            data["arch"] = arch
        (tmp_path / name).write_text(json.dumps(data))

    bench("wrn.json", None, [("(b) MIM's own work per step (mixing + augmentation)", 25.0)])
    row = claims.costs_little(Exp(), {}, str(tmp_path))
    assert "25 ms per step" in row["evidence"] and "1000 ms for a plain step" in row["evidence"]
    assert row["verdict"] == claims.HOLDS  # 1 + 0.025 / 1.0
    bench("resnet20.json", "resnet20", [("(b) MIM step (B ID + B mixed), ResNet-20", 900.0),
                                         ("(b) plain step on 2B images, ResNet-20", 600.0),
                                         ("(b) MIM step / plain step", 1.5)])
    row = claims.costs_little(Exp(), {}, str(tmp_path))
    assert "900 ms, a plain step on 256 images 600 ms" in row["evidence"]
    assert row["verdict"] == claims.FAILS  # 1.5 > 1 + 3 x 0.1
