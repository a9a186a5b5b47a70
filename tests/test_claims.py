"""The claims page: each verdict follows its stated rule from paired intervals, whichever way.

The runs are stand-ins with per-image scores drawn from known distributions: an arm whose ID
scores sit higher is better by a known amount, so every rule can be driven to each verdict.
"""

import hashlib
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mimlib.companion.analysis import claims, claims_summary
from mimlib.companion.results.setup import Setup
from mimlib.metrics import ood_metrics

SETS = ("tinyimagenet_crop", "tinyimagenet_resize", "mnist", "gaussian")
CORRECTED = claims.Column("corrected", "corrected")


class _Run:
    def __init__(self, params: dict, evals: list | None = None) -> None:
        self.params, self.evals = params, evals or []
        self.recipe = params
        self.record = {"result": {"seconds": 10.0, "log": [{}] * 10}}


class _Exp:
    """Just enough of an Experiment: runs named by their parameters, scores drawn from
    ``shift(params, detector, ood_set)`` (the ID scores' mean; OOD scores are N(0, 1))."""

    def __init__(self, shift=lambda p, d, s: 1.0, accuracy=lambda p: 0.9, curve=None,
                 n_id: int = 600, n_ood: int = 500) -> None:
        self.setup = Setup(arch="resnet20", device="cpu", curve_limit=2000)
        self.shift, self.acc, self.curve = shift, accuracy, curve
        self.n_id, self.n_ood = n_id, n_ood

    def derive(self, setup=None, settings=None):
        return self

    def base_model(self) -> _Run:
        return _Run({"base": True})

    def mim_model(self, base, eval_every: int = 0, **params) -> _Run:
        evals = self.curve(params) if eval_every and self.curve else None
        return _Run(params, evals)

    def _rng(self, *key) -> np.random.Generator:
        digest = hashlib.sha256(repr(key).encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def evaluate(self, run: _Run, detectors=("MSP",)):
        scores, rows = {}, []
        p = tuple(sorted(run.params.items()))
        for d in detectors:
            scores[f"{d}/__id__"] = self._rng(p, d, "id").normal(
                self.shift(run.params, d, None), 1, self.n_id)
            for s in SETS:
                ood = self._rng(p, d, s).normal(0, 1, self.n_ood)
                scores[f"{d}/{s}"] = ood
                rows.append({"detector": d, "ood": s,
                             **ood_metrics(scores[f"{d}/__id__"], ood)})
        return SimpleNamespace(scores=scores, rows=rows, accuracy=self.acc(run.params))

    def per_image_scores(self, run: _Run, detector: str = "MSP", stored_as: str = "float32"):
        prefix = f"{detector}/"
        return {k[len(prefix):]: v for k, v in self.evaluate(run, (detector,)).scores.items()
                if k.startswith(prefix)}

    def stored(self, kind: str, config: dict, compute) -> SimpleNamespace:
        """An entry computed on the spot (the claims' intervals; no store to keep it in)."""
        return SimpleNamespace(record={"result": compute()[0]})

    def predictions(self, run: _Run) -> np.ndarray:
        return self._rng(tuple(sorted(run.params.items())), "pred").random(self.n_id) < \
            self.acc(run.params)


def _shift(mim: float, control: float = 0.5, best: float = 0.8, far_mim: float | None = None):
    """ID-score means: MIM (on near; ``far_mim`` on far if given), its control, the best of
    the baselines (ODIN; Energy is worse)."""
    def shift(params, detector, ood_set):
        if params.get("base"):
            return {"ODIN": best, "Energy": best - 0.3}.get(detector, 0.3)
        if params.get("lam") == 0.0:
            return control
        return mim
    if far_mim is None:
        return shift
    # near and far differ: the ID scores are shared, so move the far sets' OOD scores instead
    return shift


SEEDS = [0, 1, 2]


@pytest.mark.parametrize("mim,verdict", [
    (1.4, claims.HOLDS),          # far above the best baseline everywhere
    (0.2, claims.FAILS),          # far below it
    (0.8, claims.NOT_RESOLVED),   # the same as the best baseline: the interval straddles 0
])
def test_the_baseline_verdict_follows_the_interval(mim, verdict) -> None:
    exp = _Exp(_shift(mim))
    j = claims.beats_baselines(exp, CORRECTED, {"k": 10}, ["MSP", "ODIN", "Energy"], SEEDS)
    assert j.verdict == verdict
    near = j.intervals["near"]
    assert near["best"] == "ODIN" and near["vs_best"].seeds == 3
    assert near["vs_best"].low < near["vs_best"].estimate < near["vs_best"].high
    assert set(j.intervals) == {"near", "far", "noise"}  # noise shown, not judged
    assert "near-OOD (Tiny ImageNet (crop), Tiny ImageNet (resize))" in j.evidence


def test_a_claim_that_holds_on_one_group_only_holds_partly() -> None:
    exp = _Exp(_shift(1.4))
    original = exp.evaluate

    def evaluate(run, detectors=("MSP",)):  # MNIST made easy for the baselines only
        out = original(run, detectors)
        if run.params.get("base"):
            for key in out.scores:
                if key.endswith("/mnist"):
                    out.scores[key] = out.scores[key] - 3.0
            out.rows = [{**r, "auroc": ood_metrics(out.scores[f"{r['detector']}/__id__"],
                                                   out.scores[f"{r['detector']}/{r['ood']}"])[
                "auroc"]} for r in out.rows]
        return out

    exp.evaluate = evaluate
    j = claims.beats_baselines(exp, CORRECTED, {}, ["MSP", "ODIN"], SEEDS)
    assert claims.side_verdict(j.intervals["near"]["vs_best"]) == claims.HOLDS
    assert claims.side_verdict(j.intervals["far"]["vs_best"]) == claims.FAILS
    assert j.verdict == claims.PARTLY


@pytest.mark.parametrize("verdicts,combined", [
    ([claims.HOLDS, claims.HOLDS], claims.HOLDS),
    ([claims.HOLDS, claims.FAILS], claims.PARTLY),
    ([claims.NOT_RESOLVED, claims.PARTLY], claims.PARTLY),
    ([claims.FAILS, claims.NOT_RESOLVED], claims.FAILS),
    ([claims.NOT_RESOLVED, claims.NOT_RESOLVED], claims.NOT_RESOLVED),
    ([claims.NOT_RUN], claims.NOT_RUN),
])
def test_group_verdicts_combine_by_the_stated_rule(verdicts, combined) -> None:
    assert claims.combine(verdicts) == combined


@pytest.mark.parametrize("mim_acc,verdict", [
    (0.90, claims.HOLDS),         # the same outcomes: +0.0000 [+0, +0]
    (0.70, claims.FAILS),         # 20 points lost
    (0.888, claims.NOT_RESOLVED), # about one point lost, with an interval wider than that
])
def test_the_accuracy_verdict_is_non_inferiority_against_the_control(mim_acc, verdict) -> None:
    exp = _Exp(accuracy=lambda p: 0.9 if p.get("lam") == 0.0 or mim_acc == 0.9 else mim_acc)
    if mim_acc == 0.9:  # identical predictions: make both arms draw the same outcomes
        exp.predictions = lambda run: np.arange(exp.n_id) % 10 != 0
    j = claims.accuracy_kept(exp, CORRECTED, {}, SEEDS)
    assert j.verdict == verdict, j.evidence
    assert "MIM minus control" in j.evidence and "3 seeds" in j.evidence


def _curve(values_by_seed):
    """Training curves (per-set AUROC, the same on every set) from a function of the seed."""
    def curve(params):
        vals = values_by_seed(params["seed"])
        return [{"step": 30 * i, "mean_auroc": v, "accuracy": 0.9,
                 **{f"auroc[{s}]": v for s in SETS}} for i, v in enumerate(vals)]
    return curve


@pytest.mark.parametrize("values,verdict", [
    (lambda s: [0.70, 0.80, 0.81, 0.811 + 0.001 * s], claims.HOLDS),     # flat at the end
    (lambda s: [0.70, 0.75, 0.78, 0.83 + 0.002 * s], claims.FAILS),      # still rising
    (lambda s: [0.70, 0.75, 0.78, 0.782 + 0.001 * s], claims.NOT_RESOLVED),  # a rise < 0.005?
    (lambda s: [0.70, 0.85, 0.80, 0.79 - 0.002 * s], claims.PARTLY),     # past its peak
    (lambda s: [0.70, 0.80, 0.80, [0.75, 0.85, 0.81][s]], claims.NOT_RESOLVED),  # noisy seeds
])
def test_one_epoch_verdicts_follow_the_end_of_the_curve(values, verdict) -> None:
    exp = _Exp(curve=_curve(values))
    j = claims.one_epoch_enough(exp, CORRECTED, {}, SEEDS, eval_every=30)
    assert j.verdict == verdict, j.evidence
    assert "at step 60" in j.evidence  # two thirds of 90 steps


def test_a_column_without_curves_or_ablations_says_not_run() -> None:
    column = claims.Column("mixed-stats", "corrected", {"bn_mode": "mixed-stats"},
                           ablations=False, curves=False)
    exp = _Exp()
    assert claims.one_epoch_enough(exp, column, {}, SEEDS, 30).verdict == claims.NOT_RUN
    assert claims.k_above_five(exp, column, {}, [1, 10], SEEDS).verdict == claims.NOT_RUN
    assert claims.augmentation_helps(exp, column, {}, SEEDS).verdict == claims.NOT_RUN


@pytest.mark.parametrize("large,verdict", [(1.3, claims.HOLDS), (0.7, claims.FAILS),
                                           (1.0, claims.NOT_RESOLVED)])
def test_the_k_verdict_is_the_best_large_k_against_the_best_small_k(large, verdict) -> None:
    exp = _Exp(lambda p, d, s: large if p.get("k", 0) > 5 else 1.0 - 0.1 * (p.get("k") == 1))
    j = claims.k_above_five(exp, CORRECTED, {"steps": 130}, [1, 5, 10], SEEDS)
    assert j.verdict == verdict, j.evidence
    assert "k=10" in j.evidence and "k=5" in j.evidence  # k=1 is the worse small one
    assert j.evidence.endswith("(130 steps per run, 3 seeds)")


@pytest.mark.parametrize("on,verdict", [(1.3, claims.HOLDS), (0.7, claims.FAILS),
                                        (1.0, claims.NOT_RESOLVED)])
def test_the_augmentation_verdict_is_on_against_off(on, verdict) -> None:
    exp = _Exp(lambda p, d, s: on if p.get("aug_p") == 1.0 else 1.0)
    assert claims.augmentation_helps(exp, CORRECTED, {}, SEEDS).verdict == verdict


def test_the_table_has_a_verdict_per_column_and_the_headline_counts_them(
        tmp_path) -> None:
    exp = _Exp(_shift(1.4), curve=_curve(lambda s: [0.7, 0.8, 0.81, 0.812]))
    columns = [CORRECTED, claims.Column("faithful", "faithful", ablations=False),
               claims.Column("BN mixed-stats", "corrected", {"bn_mode": "mixed-stats"},
                             curves=False, per_image_accuracy=False)]
    df = claims.claims_table(exp, {"k": 10}, detectors=["MSP", "ODIN"], columns=columns,
                             ks=[1, 10], ablation={"steps": 130}, eval_every=30, seeds=SEEDS,
                             ablation_seeds=SEEDS, benchmark=str(tmp_path))
    assert list(df.columns) == ["claim", "corrected", "faithful", "BN mixed-stats", "evidence",
                                "rule", "details"]
    assert df.loc[0, "corrected"] == claims.HOLDS
    assert df.loc[3, "faithful"] == claims.NOT_RUN  # k ablation: corrected only
    assert df.loc[2, "BN mixed-stats"] == claims.NOT_RUN  # no curve in that setting
    assert "t interval over seeds" in df.loc[1, "details"]  # the sensitivity's accuracy
    html = claims_summary.landing_headline(df, b"\x89PNG forest", "CIFAR-10 (JPEG copy), ResNet-20")
    assert html.count("<li>") == 3 and "<figure" in html and "data:image/png;base64," in html
    assert "MIM minus its control" in html and "CIFAR-10 (JPEG copy), ResNet-20" in html
    held = {label: int((df[label] == claims.HOLDS).sum()) for label in ("corrected", "faithful")}
    assert all(f"<b>{label}:</b> The paper's claims that hold here: {n} of 6." in html
               for label, n in held.items())
    # the page's table: a verdict and a few words per cell, the intervals in the full evidence
    j = df.attrs["judgements"]["corrected"][0].intervals
    assert df.loc[0, "evidence"].startswith(
        f"corrected: near {j['near']['vs_best'].estimate:+.3f} (ODIN), far ")
    assert j["near"]["vs_best"].text() in df.loc[0, "details"]
    assert "[" not in df.loc[0, "evidence"] and "not run" in df.loc[3, "evidence"]


def test_the_forest_plot_draws_the_claims_tables_intervals(tmp_path) -> None:
    exp = _Exp(_shift(1.4), curve=_curve(lambda s: [0.7, 0.8, 0.81, 0.812]))
    df = claims.claims_table(exp, {"k": 10}, detectors=["MSP", "ODIN"], columns=[CORRECTED],
                             ks=[1, 10], ablation={"steps": 130}, eval_every=30, seeds=SEEDS,
                             ablation_seeds=SEEDS, benchmark=str(tmp_path))
    rows = claims_summary.forest_frame(df).set_index(["comparison", "group"])
    js = df.attrs["judgements"]["corrected"]
    expected = {("MIM − control", g): js[0].intervals[g]["vs_control"] for g in SETS_GROUPS}
    expected |= {("MIM − best", g): js[0].intervals[g]["vs_best"] for g in SETS_GROUPS}
    expected |= {("k > 5 − k ≤ 5", g): js[3].intervals[g] for g in SETS_GROUPS}
    expected |= {("augment on − off", g): js[4].intervals[g] for g in SETS_GROUPS}
    expected |= {("epoch end − 2/3", g): js[2].intervals[g]["rise"] for g in SETS_GROUPS}
    expected[("MIM − control", "ID")] = js[1].intervals["all"]
    assert sorted(rows.index) == sorted(expected)
    for key, interval in expected.items():
        row = rows.loc[key]
        assert (row["estimate"], row["low"], row["high"]) == \
            (interval.estimate, interval.low, interval.high), key
    # MIM far above the best baseline: the claim holds on the judged groups; noise is apart
    assert rows.loc[("MIM − best", "near"), "verdict"] == claims.HOLDS
    assert rows.loc[("MIM − best", "near"), "against"] == "ODIN"
    assert rows.loc[("MIM − best", "noise"), "verdict"] == claims_summary.NOT_JUDGED
    assert rows.loc[("MIM − control", "far"), "verdict"] == "MIM better"
    assert rows.loc[("MIM − control", "ID"), "verdict"] == df.loc[1, "corrected"]
    assert set(claims_summary.forest_frame(df)["figure"]) == set(claims_summary.FOREST_FIGURES)


SETS_GROUPS = ("near", "far", "noise")


def test_the_cost_claim_uses_the_benchmark_of_the_same_model_when_there_is_one(tmp_path):
    """A benchmark of this architecture gives the measured step ratio; one of another model
    only the cost of mixing, set against the stored control's step."""
    import json

    class Run:
        def __init__(self, seconds: float) -> None:
            self.record = {"result": {"seconds": seconds, "log": [{}] * 10}}

    class Exp(_Exp):  # a ResNet-20 on the CPU
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


def test_columns_come_from_plain_mappings_and_bad_ones_say_what_is_wrong() -> None:
    from mimlib.errors import ConfigError
    from mimlib.companion.book.parameters import check_parameters

    spec = [{"label": "corrected", "protocol": "corrected"},
            {"label": "BN mixed-stats", "protocol": "corrected",
             "overrides": {"bn_mode": "mixed-stats"}, "curves": False}]
    columns = claims.columns_from(spec)
    assert columns[1] == claims.Column("BN mixed-stats", "corrected", {"bn_mode": "mixed-stats"},
                                       curves=False)
    check_parameters("15_claims", {"columns": spec, "bn_modes": ["frozen", "id-stats"]})
    for bad, message in (
            ([{"label": "x"}], "a label and a protocol"),
            ([{"label": "x", "protocol": "strict"}], "unknown protocol"),
            ([{"label": "x", "protocol": "faithful", "seeds": 3}], r"unknown field\(s\) \['seeds'\]"),
            ([{"label": "x", "protocol": "faithful"}] * 2, "distinct labels")):
        with pytest.raises(ConfigError, match=message):
            claims.columns_from(bad)
    with pytest.raises(ConfigError, match="bn_mode"):
        check_parameters("15_claims", {"columns": [
            {"label": "x", "protocol": "corrected", "overrides": {"bn_mode": "train-ish"}}]})
    with pytest.raises(ConfigError, match="batch-norm modes"):
        check_parameters("07_ablation_k", {"bn_modes": ["eval-ish"]})
    check_parameters("09_ablation_training", {"steps_grid": [30, None]})  # None: one epoch
    with pytest.raises(ConfigError, match=r"whole numbers >= 1 or None"):
        check_parameters("09_ablation_training", {"steps_grid": [0]})
