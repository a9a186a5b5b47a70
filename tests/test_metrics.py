import numpy as np
import pytest
import torch
from pytorch_ood.metrics import OODMetrics
from pytorch_ood.metrics import functional as pod
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve

from mimlib import ood_metrics
from mimlib.errors import ConfigError


def _sklearn(id_s: np.ndarray, ood_s: np.ndarray) -> dict[str, float]:
    scores = np.r_[id_s, ood_s]
    is_id = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    p_in, r_in, _ = precision_recall_curve(is_id, scores)
    p_out, r_out, _ = precision_recall_curve(1 - is_id, -scores)
    fpr, tpr, _ = roc_curve(is_id, scores, drop_intermediate=False)
    return {"auroc": roc_auc_score(is_id, scores), "aupr_in": auc(r_in, p_in),
            "aupr_out": auc(r_out, p_out), "fpr95": fpr[np.searchsorted(tpr, 0.95)]}


def _cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    cases = []
    for n_id, n_ood, shift in [(200, 300, 1.0), (1000, 150, 0.3), (57, 911, 2.0)]:
        cases.append((rng.normal(shift, 1, n_id), rng.normal(0, 1, n_ood)))
    # heavy ties: integer-valued scores
    cases.append((rng.integers(0, 5, 400).astype(float), rng.integers(0, 4, 350).astype(float)))
    return cases


@pytest.mark.parametrize("id_s,ood_s", _cases())
def test_metrics_equal_scikit_learn(id_s: np.ndarray, ood_s: np.ndarray) -> None:
    ours, ref = ood_metrics(id_s, ood_s), _sklearn(id_s, ood_s)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


@pytest.mark.parametrize("id_s,ood_s", _cases())
def test_metrics_equal_pytorch_ood_with_its_sign_conventions(id_s: np.ndarray,
                                                             ood_s: np.ndarray) -> None:
    ours = ood_metrics(torch.as_tensor(id_s), torch.as_tensor(ood_s))
    # pytorch-ood: outlier scores (higher = OOD), labels < 0 mark OOD, OOD is the positive class
    outlier = torch.as_tensor(-np.r_[id_s, ood_s])
    labels = torch.as_tensor(np.r_[np.zeros(len(id_s)), -np.ones(len(ood_s))]).long()
    assert ours["auroc"] == pytest.approx(pod.auroc(outlier, labels).item(), abs=1e-12)
    assert ours["aupr_in"] == pytest.approx(pod.aupr(outlier, labels, "id").item(), abs=1e-12)
    assert ours["aupr_out"] == pytest.approx(pod.aupr(outlier, labels, "ood").item(), abs=1e-12)
    # its FPR95TPR is the mirror image: ours equals it with the roles of ID and OOD swapped
    mirrored = torch.as_tensor(np.r_[id_s, ood_s])
    swapped = torch.as_tensor(np.r_[-np.ones(len(id_s)), np.zeros(len(ood_s))]).long()
    assert ours["fpr95"] == pytest.approx(pod.fpr_at_tpr(mirrored, swapped).item(), abs=1e-12)
    # and the streaming OODMetrics of pytorch-ood agrees on AUROC and the OOD-positive AUPR
    streaming = OODMetrics().update(outlier, labels).compute()
    assert ours["aupr_out"] == pytest.approx(streaming["AUPR-OUT"], abs=1e-6)
    assert ours["auroc"] == pytest.approx(streaming["AUROC"], abs=1e-6)


def test_hand_computed_values() -> None:
    perfect = ood_metrics([3.0, 4.0, 5.0], [0.0, 1.0])
    assert perfect == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}
    reversed_ = ood_metrics([0.0, 1.0], [3.0, 4.0, 5.0])
    assert reversed_["auroc"] == 0.0 and reversed_["fpr95"] == 1.0
    # 20 ID scores 1..20, OOD scores 1.5 and 19.5: the 95% threshold keeps ID >= 2, so 1.5 is
    # rejected and 19.5 accepted: FPR95 = 1/2; AUROC = P(id > ood) = (19 + 1) / 40
    m = ood_metrics(np.arange(1.0, 21.0), [1.5, 19.5])
    assert m["fpr95"] == 0.5 and m["auroc"] == pytest.approx(20 / 40)


@pytest.mark.parametrize("n_id, n_ood", [(1, 20), (9, 2), (7, 21), (24, 200)])
def test_a_perfect_detector_scores_exactly_one(n_id: int, n_ood: int) -> None:
    # summed naively, these sizes gave an AUPR of 1.0000000000000002 (outside [0, 1])
    perfect = ood_metrics(np.arange(n_id) + 1000.0, np.arange(n_ood, dtype=float))
    assert perfect == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}


def test_bad_scores_are_errors() -> None:
    with pytest.raises(ConfigError, match="empty"):
        ood_metrics([], [1.0])
    with pytest.raises(ConfigError, match="NaN"):
        ood_metrics([1.0, float("nan")], [0.0])
