"""Mixed images for the book: galleries, their pixel statistics and the classifier's confidence.

Mixing and augmentation run on [0, 1] pixels here (mixing commutes with the affine
normalisation, and the augmentation works on pixels anyway), and each model normalises with
its own statistics. Results are stored, so the chapter is rebuilt without the data.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ...augment import PostMixAugment
from ...images import ImageSet
from ..results.experiment import Experiment
from ..results.runs import ModelRun
from ...mixing import multi_input_mixup
from ...models import input_normalization

#: The post-mix augmentation on [0, 1] pixels (identity normalisation), always applied.
PIXEL_AUGMENT = PostMixAugment(p=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@torch.no_grad()
def mixed_batches(images: ImageSet, ks: Sequence[int], n: int, *, augment: bool,
                  seed: int = 0) -> dict[int, torch.Tensor]:
    """n mixed images per k ([0, 1] pixels) from the first images of a set, reproducibly."""
    x = images.images[: max(n, 1) * 4].float() / 255
    out = {}
    for k in ks:
        gen = torch.Generator().manual_seed(seed + k)
        mixed = multi_input_mixup(x, k, generator=gen)[:n]
        out[k] = PIXEL_AUGMENT(mixed, generator=gen) if augment else mixed
    return out


@torch.no_grad()
def msp_of(model: nn.Module, pixels: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Maximum softmax probability of [0, 1] pixel inputs, normalised as the model wants, on
    the device the model is on (the model stays there)."""
    model.eval()
    device = next(model.parameters()).device
    norm = input_normalization(model)
    with torch.no_grad():
        return torch.cat([model(norm.apply(pixels[i:i + batch_size].to(device))).softmax(1)
                          .amax(1).float().cpu()
                          for i in range(0, len(pixels), batch_size)]).numpy()


def gallery(exp: Experiment, run: ModelRun, ks: Sequence[int], n: int, seed: int = 0
            ) -> tuple[dict[str, dict[int, torch.Tensor]], dict[str, dict[int, np.ndarray]]]:
    """n mixed test images per k, without and with post-mix augmentation, and the model's MSP
    of each: ``({variant: {k: pixels}}, {variant: {k: msp}})``, stored as 8-bit images."""
    config = {"what": "gallery", "model": run.recipe, "data": exp.eval_data_key(),
              "ks": list(ks), "n": n, "seed": seed}

    def compute() -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {}
        for variant, augment in (("mixed", False), ("mixed + augmented", True)):
            for k, x in mixed_batches(exp.id_test, ks, n, augment=augment, seed=seed).items():
                arrays[f"{variant}/{k}/images"] = (x.clamp(0, 1) * 255).round().byte().numpy()
                arrays[f"{variant}/{k}/msp"] = msp_of(run.model, x)
        return {}, arrays

    stored = exp.stored("analysis", config, compute).arrays()
    images: dict[str, dict[int, torch.Tensor]] = {}
    msp: dict[str, dict[int, np.ndarray]] = {}
    for name, value in stored.items():
        variant, k, what = name.split("/")
        if what == "images":
            images.setdefault(variant, {})[int(k)] = torch.from_numpy(value).float() / 255
        else:
            msp.setdefault(variant, {})[int(k)] = value
    order = lambda d: {v: dict(sorted(d[v].items())) for v in ("mixed", "mixed + augmented")}  # noqa: E731
    return order(images), order(msp)


def mixing_statistics(exp: Experiment, run: ModelRun, ks: Sequence[int], n: int = 512,
                      seed: int = 0) -> pd.DataFrame:
    """How pixels and the classifier's confidence change with k, without and with augmentation.

    Per k: the mean per-image pixel standard deviation (contrast), the mean absolute Laplacian
    (fine detail), the fraction of (near-)black pixels, and the mean MSP of the classifier.
    """
    config = {"what": "mixing_statistics", "model": run.recipe, "data": exp.eval_data_key(),
              "ks": list(ks), "n": n, "seed": seed}

    def compute() -> tuple[dict, None]:
        rows = []
        for augmented in (False, True):
            for k, x in mixed_batches(exp.id_test, ks, n, augment=augmented, seed=seed).items():
                pixels = x.clamp(0, 1)
                gray = pixels.mean(1, keepdim=True)
                kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
                lap = torch.nn.functional.conv2d(gray, kernel).abs().mean().item()
                msp = msp_of(run.model, x)
                rows.append({"k": k, "augmented": augmented,
                             "pixel_std": pixels.std((1, 2, 3)).mean().item(),
                             "laplacian": lap, "black_fraction": (pixels.amax(1) < 0.02).float()
                             .mean().item(), "mean_msp": float(msp.mean()),
                             "msp_above_0.9": float((msp > 0.9).mean())})
        return {"rows": rows}, None

    return pd.DataFrame(exp.stored("analysis", config, compute).record["result"]["rows"])
