"""The offline CIFAR-10 experiment on one GPU, within a fixed time budget (one device call).

    python scripts/gpu_offline_cifar10.py --data carry --out "$OUT" --budget 330

Pretrains WRN-40-2 on the JPEG CIFAR-10 with the OE recipe for as many epochs as fit in the
budget (measured, then fixed, so the cosine schedule is the recipe's), MIM-fine-tunes it under
both protocols, and scores MSP, the ten baselines and MIM on Tiny-ImageNet crop / resize
(rebuilt from the test images) and the OE noise sets. Writes the results store (records and
per-sample scores), the checkpoint and a summary to ``--out``. Needs only torch, torchvision,
numpy, scipy and pytorch-ood (whose wheel ``scripts/gpu_run.sh`` carries).
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
from mimlib.experiment import Experiment, Setup
from mimlib.store import Store, environment
from mimlib.train import PretrainConfig, pretrain
from mimlib.models import build_model


def _setup(data: Path, epochs: float, device: str, limit: int | None, arch: str) -> Setup:
    tin = data / "tinyimagenet-test.tar.xz"
    return Setup(id_data=f"folder:{data / 'cifar10-jpeg.tar.xz'}",
                 ood_sets=(f"tinyimagenet_crop=crop:{tin}", f"tinyimagenet_resize=resize:{tin}",
                           "gaussian", "rademacher", "blobs"),
                 arch=arch, base="pretrain", pretrain_epochs=epochs, pretrain_lr=0.1,
                 protocol="corrected", device=device, download=False, train_limit=limit,
                 test_limit=limit, ood_limit=limit)


def affordable_epochs(exp: Experiment, budget: float, max_epochs: int,
                      probe_steps: int = 60) -> tuple[int, float]:
    """Epochs of the OE recipe that fit in ``budget`` seconds, from a timed probe."""
    run = pretrain(build_model(exp.setup.arch, exp.id_train.num_classes), exp.id_train,
                   PretrainConfig(steps=probe_steps, device=exp.setup.device))
    per_step = run.seconds / probe_steps
    steps_per_epoch = math.ceil(len(exp.id_train) / 128)
    return max(1, min(max_epochs, int(budget / (per_step * steps_per_epoch)))), per_step


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="carry", help="folder with the two .tar.xz archives")
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget", type=float, default=330.0,
                        help="seconds for pretraining (the rest of the call is evaluation)")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="subset sizes (CPU dry runs)")
    parser.add_argument("--arch", default="wrn40_2", help="small_cnn for a quick dry run")
    parser.add_argument("--probe-steps", type=int, default=60,
                        help="pretraining steps timed to size the budget")
    args = parser.parse_args(argv)
    out = Path(args.out)
    store = Store(out / "store")
    started = time.perf_counter()

    probe = Experiment(_setup(Path(args.data), 1, args.device, args.limit, args.arch), store,
                       profile="offline-cifar10 (GPU script)")
    epochs, per_step = affordable_epochs(probe, args.budget, args.max_epochs, args.probe_steps)
    print(f"pretraining budget {args.budget:.0f} s: {per_step * 1e3:.1f} ms/step, "
          f"{epochs} epochs", flush=True)

    summary: dict = {"arch": args.arch, "epochs": epochs, "seconds_per_step": per_step,
                     "protocols": {}, "environment": environment()}
    for protocol in ("corrected", "faithful"):
        exp = probe.derive(dataclasses.replace(probe.setup, pretrain_epochs=epochs,
                                               protocol=protocol))
        base = exp.base_model()  # trained once, shared by both protocols (same key)
        mim = exp.mim_model(base, eval_every=30)
        baselines = exp.evaluate(base, TABLE1_DETECTORS)
        ours = exp.evaluate(mim, ("MSP",))
        summary["protocols"][protocol] = {
            "base_accuracy": baselines.accuracy, "mim_accuracy": ours.accuracy,
            "mean_auroc": {d: baselines.mean(d) for d in TABLE1_DETECTORS} | {"MIM": ours.mean("MSP")},
            "rows": baselines.rows + [{**r, "detector": "MIM"} for r in ours.rows],
            "mim_curve": mim.evals, "pretrain_seconds": base.record["result"]["seconds"],
            "mim_seconds": mim.record["result"]["seconds"]}
        print(protocol, json.dumps(summary["protocols"][protocol]["mean_auroc"]), flush=True)
    checkpoint = next(iter(store.entries("pretrain"))).file("model.pt")
    shutil.copy(checkpoint, out / f"{args.arch}_cifar10_jpeg.pt")
    summary["total_seconds"] = time.perf_counter() - started
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"done in {summary['total_seconds']:.0f} s", flush=True)
    return summary


if __name__ == "__main__":
    torch.backends.cudnn.benchmark = True
    main()
