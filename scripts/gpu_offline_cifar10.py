"""The offline CIFAR-10 experiment on one GPU, within a fixed time budget (one device call).

    python scripts/gpu_offline_cifar10.py --data carry --out "$OUT" --budget 200

Pretrains WRN-40-2 on the JPEG CIFAR-10 with the OE recipe for as many epochs as fit in the
budget (measured, then fixed, so the cosine schedule is the recipe's), MIM-fine-tunes it under
both protocols, and scores MSP, the ten baselines and MIM on Tiny-ImageNet crop / resize
(rebuilt from the test images) and the OE noise sets. Writes the results store (records and
per-sample scores), the checkpoint and a summary to ``--out``; the checkpoint as soon as it is
trained and the summary after each protocol, so a call cut short keeps what finished (the
summary's ``unfinished`` lists the rest). Needs only torch, torchvision, numpy, scipy and
pytorch-ood (whose wheel ``scripts/gpu_run.sh`` carries).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import torch

from mimlib.detectors import TABLE1_DETECTORS
from mimlib.companion.results.experiment import Experiment
from mimlib.companion.results.setup import Setup
from mimlib.companion.results.provenance import environment
from mimlib.companion.results.store import Store
from mimlib.train import pretrain
from mimlib.train_config import PretrainConfig
from mimlib.models import build_model


def _setup(data: Path, epochs: float, device: str, limit: int | None, arch: str) -> Setup:
    tin = data / "tinyimagenet-test.tar.xz"
    return Setup(id_data=f"folder:{data / 'cifar10-jpeg.tar.xz'}",
                 ood_sets=(f"tinyimagenet_crop=crop:{tin}", f"tinyimagenet_resize=resize:{tin}",
                           "gaussian", "rademacher", "blobs"),
                 arch=arch, base="pretrain", pretrain_epochs=epochs, pretrain_lr=0.1,
                 protocol="corrected", device=device, download=False, train_limit=limit,
                 test_limit=limit, ood_limit=limit)


#: The work after pretraining, in epochs of pretraining compute: for each protocol one MIM epoch
#: (every step trains on twice the images) with an evaluation every 30 steps. A CPU dry run
#: (small CNN, the JPEG CIFAR-10) measured 10.4 for both protocols; rounded up.
AFTER_PRETRAINING_EPOCHS = 12
#: Seconds for fitting and scoring every detector (about 60 in the same dry run).
SCORING_SECONDS = 60.0


def epoch_seconds(exp: Experiment, probe_steps: int = 60) -> float:
    """Seconds per epoch of the OE recipe on this device, from a timed probe of a few steps."""
    run = pretrain(build_model(exp.setup.arch, exp.id_train.num_classes), exp.id_train,
                   PretrainConfig(steps=probe_steps, device=exp.setup.device))
    return run.seconds / probe_steps * math.ceil(len(exp.id_train) / 128)


def affordable_epochs(budget: float, epoch: float, max_epochs: int,
                      seconds_left: float | None = None) -> int:
    """Epochs (at least one) that fit in ``budget`` seconds and, when the call must end within
    ``seconds_left``, still leave time for fine-tuning and scoring under both protocols."""
    if seconds_left is not None:
        budget = min(budget, seconds_left - AFTER_PRETRAINING_EPOCHS * epoch - SCORING_SECONDS)
    return max(1, min(max_epochs, int(budget / epoch)))


def _write_summary(out: Path, summary: dict) -> None:
    """summary.json, replaced whole (a call cut short never leaves half a file)."""
    partial = out / "summary.json.partial"
    partial.write_text(json.dumps(summary, indent=1, default=str))
    partial.replace(out / "summary.json")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="carry", help="folder with the two .tar.xz archives")
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget", type=float, default=200.0,
                        help="seconds for pretraining (the rest of the call is evaluation)")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="subset sizes (CPU dry runs)")
    parser.add_argument("--arch", default="wrn40_2", help="small_cnn for a quick dry run")
    parser.add_argument("--probe-steps", type=int, default=60,
                        help="pretraining steps timed to size the budget")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds in which the whole run must end (shrinks the budget)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    store = Store(out / "store")
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {message}", flush=True)

    probe = Experiment(_setup(Path(args.data), 1, args.device, args.limit, args.arch), store,
                       profile="offline-cifar10 (GPU script)")
    log(f"data: {len(probe.id_train)} training and {len(probe.id_test)} test images")
    epoch = epoch_seconds(probe, args.probe_steps)
    left = None if args.deadline is None else args.deadline - (time.perf_counter() - started)
    epochs = affordable_epochs(args.budget, epoch, args.max_epochs, left)
    log(f"pretraining: {epoch:.1f} s an epoch, budget {args.budget:.0f} s, "
        f"{'no deadline' if left is None else f'{left:.0f} s to the deadline'}: {epochs} epochs")

    protocols = ("corrected", "faithful")
    summary: dict = {"arch": args.arch, "epochs": epochs, "seconds_per_epoch": epoch,
                     "protocols": {}, "unfinished": list(protocols),
                     "environment": environment()}
    for protocol in protocols:
        exp = probe.derive(dataclasses.replace(probe.setup, pretrain_epochs=epochs,
                                               protocol=protocol))
        base = exp.base_model()  # trained once, shared by both protocols (same key)
        checkpoint = out / f"{args.arch}_cifar10_jpeg.pt"
        if not checkpoint.exists():
            shutil.copy(store.entries("pretrain")[0].file("model.pt"), checkpoint)
            log(f"pretrained: {base.record['result']['seconds']:.0f} s")
        mim = exp.mim_model(base, eval_every=30)
        log(f"{protocol}: fine-tuned in {mim.record['result']['seconds']:.0f} s")
        baselines = exp.evaluate(base, TABLE1_DETECTORS)
        ours = exp.evaluate(mim, ("MSP",))
        means = {d: baselines.mean(d) for d in TABLE1_DETECTORS} | {"MIM": ours.mean("MSP")}
        summary["protocols"][protocol] = {
            "base_accuracy": baselines.accuracy, "mim_accuracy": ours.accuracy,
            "mean_auroc": means,
            "rows": baselines.rows + [{**r, "detector": "MIM"} for r in ours.rows],
            "mim_curve": mim.evals, "pretrain_seconds": base.record["result"]["seconds"],
            "mim_seconds": mim.record["result"]["seconds"]}
        summary["unfinished"].remove(protocol)
        summary["total_seconds"] = time.perf_counter() - started
        _write_summary(out, summary)
        log(f"{protocol}: scored; mean AUROC {json.dumps(means)}")
    log("done")
    return summary


if __name__ == "__main__":
    torch.backends.cudnn.benchmark = True
    main()
