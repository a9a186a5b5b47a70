"""Penultimate features of ID, mixed and OOD images, and their 2-D embeddings."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..results.experiment import Experiment

from ..results.runs import ModelRun
from ...models import features_and_logits, input_normalization
from .mixed_images import mixed_batches
from .stats import scores_digest


def penultimate_features(exp: Experiment, run: ModelRun, ks: Sequence[int], n: int = 300,
                         seed: int = 0) -> pd.DataFrame:
    """Features and MSP of ID test images (with labels), mixed images per k, and OOD sets
    (stored, so the chapter is rebuilt without the data)."""
    config = {"what": "penultimate_features", "model": run.recipe, "data": exp.eval_data_key(),
              "ks": list(ks), "n": n, "seed": seed}

    def compute() -> tuple[dict, dict[str, np.ndarray]]:
        frame = _features(exp, run, ks, n, seed)
        return ({"groups": frame["group"].tolist(), "kinds": frame["kind"].tolist()},
                {"msp": frame["msp"].to_numpy(np.float32),
                 "features": frame.filter(regex=r"^f\d+$").to_numpy(np.float32)})

    entry = exp.stored("analysis", config, compute)
    arrays, result = entry.arrays(), entry.record["result"]
    z = arrays["features"]
    frame = pd.DataFrame(z, columns=[f"f{i}" for i in range(z.shape[1])])
    frame.insert(0, "msp", arrays["msp"])
    frame.insert(0, "kind", result["kinds"])
    frame.insert(0, "group", result["groups"])
    return frame


def _features(exp: Experiment, run: ModelRun, ks: Sequence[int], n: int,
              seed: int) -> pd.DataFrame:
    model = run.model.eval().cpu()
    norm = input_normalization(model)
    parts: list[tuple[str, str, torch.Tensor]] = []
    test = exp.id_test.subset(n, seed)
    for cls in range(test.num_classes):
        keep = test.labels == cls
        parts.append((f"ID: {test.classes[cls]}", "ID", norm.apply(test.images[keep])))
    for k, x in mixed_batches(exp.id_test, ks, n, augment=True, seed=seed).items():
        parts.append((f"mixed k={k}", "mixed", norm.apply(x)))
    for name, ood in exp.ood.items():
        parts.append((name, "OOD", norm.apply(ood.subset(n, seed).images)))
    frames = []
    with torch.no_grad():
        for group, kind, x in parts:
            pairs = [features_and_logits(model, x[i:i + 512]) for i in range(0, len(x), 512)]
            z = torch.cat([features for features, _ in pairs])
            msp = torch.cat([logits for _, logits in pairs]).softmax(1).amax(1)
            frame = pd.DataFrame(z.numpy(), columns=[f"f{i}" for i in range(z.shape[1])])
            frame.insert(0, "msp", msp.numpy())
            frame.insert(0, "kind", kind)
            frame.insert(0, "group", group)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def embed_2d(features: pd.DataFrame, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D embedding of the feature columns by PCA, t-SNE, or UMAP (when installed)."""
    z = features.filter(regex=r"^f\d+$").to_numpy()
    z = (z - z.mean(0)) / (z.std(0) + 1e-8)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(z)
    if method == "tsne":
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        z = PCA(n_components=min(30, z.shape[1]), random_state=seed).fit_transform(z)
        return TSNE(n_components=2, init="pca", random_state=seed, perplexity=30).fit_transform(z)
    if method == "umap":
        import umap  # optional dependency

        return umap.UMAP(random_state=seed).fit_transform(z)
    raise ValueError(f"unknown embedding {method!r}; use pca, tsne or umap")


def stored_embedding(exp: Experiment, features: pd.DataFrame, method: str = "pca",
                     seed: int = 0) -> np.ndarray:
    """:func:`embed_2d`, computed once and kept in the results store (kind ``analysis``), keyed
    by a digest of the feature columns, the method and the seed: a t-SNE takes minutes on two
    cores, and a page drawn again from the store reads it."""
    z = features.filter(regex=r"^f\d+$").to_numpy(np.float32)
    config = {"what": "embedding", "features": scores_digest([z]), "method": method,
              "seed": seed}
    def compute() -> tuple[dict, dict[str, np.ndarray]]:
        return {}, {"coords": embed_2d(features, method, seed).astype(np.float32)}

    return exp.stored("analysis", config, compute).arrays()["coords"]


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True

