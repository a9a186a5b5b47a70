"""Real images from ../shared/data (skipped when absent): the JPEG CIFAR-10 and Tiny ImageNet.

A small CNN is trained briefly on a CIFAR-10 subset, MIM-fine-tuned for one epoch, and scored
with MSP against the Tiny-ImageNet crop and resize sets rebuilt from the test images. MIM must
lower its confidence on k-image means (what it trains); on Tiny ImageNet it may not help a model
this weak, so only a bound on the change is asserted (the measured values are in the test).
"""

import pytest

from mimlib.companion.analysis.mixed_images import mixed_batches, msp_of
from mimlib.companion.results.experiment import Experiment
from mimlib.companion.results.setup import Setup
from mimlib.companion.results.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def test_small_cnn_on_jpeg_cifar10_against_tiny_imagenet(cifar10_jpeg, tinyimagenet_test,
                                                           tmp_path) -> None:
    setup = Setup(id_data=f"folder:{cifar10_jpeg}",
                  ood_sets=(f"tinyimagenet_crop=crop:{tinyimagenet_test}",
                            f"tinyimagenet_resize=resize:{tinyimagenet_test}"),
                  arch="small_cnn", pretrain_epochs=4, pretrain_lr=0.05, train_limit=12000,
                  test_limit=2000, ood_limit=2000, device="cpu")
    exp = Experiment(setup, Store(tmp_path))
    assert exp.id_train.classes[:3] == ("airplane", "automobile", "bird")
    assert len(exp.ood["tinyimagenet_crop"]) == len(exp.ood["tinyimagenet_resize"]) == 2000
    base = exp.base_model()
    before = exp.evaluate(base)
    mim = exp.mim_model(base, epochs=1, lr=1e-3)
    after = exp.evaluate(mim)
    print("accuracy", before.accuracy, after.accuracy)
    print({r["ood"]: round(r["auroc"], 4) for r in before.rows},
          {r["ood"]: round(r["auroc"], 4) for r in after.rows})
    assert before.accuracy > 0.5  # ten classes: chance is 0.1
    assert after.accuracy > before.accuracy - 0.05
    auroc = {(name, r["ood"]): r["auroc"] for name, ev in (("before", before), ("after", after))
             for r in ev.rows}
    # measured on this recipe: crop ~0.50 (a weak 60% model is as confident on crops of natural
    # images as on CIFAR), resize ~0.67
    for when in ("before", "after"):
        assert auroc[(when, "tinyimagenet_resize")] > 0.6
        assert auroc[(when, "tinyimagenet_crop")] > 0.45
    # what MIM trains: means of ten test images get a lower confidence than before (measured:
    # mean MSP 0.44 -> 0.21 with batch norm frozen, lr 1e-3, seeds 0 and 1)
    mixes = mixed_batches(exp.id_test, [10], 500, augment=False)[10]
    confidence = {when: msp_of(run.model, mixes).mean() for when, run in (("before", base),
                                                                         ("after", mim))}
    assert confidence["after"] < confidence["before"] - 0.1
    # Tiny ImageNet itself barely moves, and not always up: with batch norm frozen (the authors'
    # mode) this weak model loses 0.015-0.023 mean AUROC at lr 3e-4 and 1e-3 (2 seeds each; crop
    # 0.51 -> 0.47-0.49) and none at 1e-4; with mixed-stats it gains 0.006-0.014 (measured)
    assert abs(after.mean("MSP") - before.mean("MSP")) < 0.05
