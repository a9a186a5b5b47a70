"""An embedded data set: procedurally drawn 32x32 images from a seed, no files, no downloads.

ID data: six shape classes (disc, ring, square, triangle, cross, striped disc) at random
positions, sizes, rotations and colours on noisy two-colour gradients. OOD sets: unseen shapes on
the same backgrounds (near OOD), full-frame textures (far OOD), and scenes that hold several ID
shapes at once (compositions, a natural target for mixing-based outliers). It lets the whole
pipeline run, and be tested, on a CPU with no internet; numbers on it say nothing about CIFAR.
"""

from __future__ import annotations

import numpy as np

SIZE = 32
ID_CLASSES = ("disc", "ring", "square", "triangle", "cross", "striped_disc")
OOD_KINDS = ("shapes", "morphs", "blends", "textures", "scenes")
AUXILIARY_KINDS = ("clutter",)  # for Outlier Exposure: disjoint from every test set


def _grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return xx[None], yy[None]


def _backgrounds(rng: np.random.Generator, n: int, size: int = SIZE) -> np.ndarray:
    """Noisy linear gradients between two random colours, (n, size, size, 3) in [0, 1]."""
    xx, yy = _grid(size)
    theta = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    t = ((xx - size / 2) * np.cos(theta) + (yy - size / 2) * np.sin(theta)) / size + 0.5
    c0 = rng.uniform(0.0, 1.0, (n, 1, 1, 3))
    c1 = np.clip(c0 + rng.normal(0, 0.25, (n, 1, 1, 3)), 0, 1)
    img = c0 + (c1 - c0) * t[..., None]
    return img + rng.normal(0, 0.03, img.shape)


def _contrasting_colours(rng: np.random.Generator, bg_mean: np.ndarray) -> np.ndarray:
    """Foreground colours at least 0.35 away (in mean intensity) from their background."""
    colour = rng.uniform(0, 1, bg_mean.shape)
    too_close = np.abs(colour.mean(-1) - bg_mean.mean(-1)) < 0.35
    shift = np.where(bg_mean.mean(-1, keepdims=True) > 0.5, -0.5, 0.5)
    return np.where(too_close[:, None], np.clip(colour + shift, 0, 1), colour)


def _signed_distance(kind: str, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance (pixels, negative inside) of a shape of radius r in its own frame."""
    rad = np.sqrt(u * u + v * v)
    if kind == "disc":
        return rad - r
    if kind == "ring":
        return np.abs(rad - 0.75 * r) - 0.25 * r
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8 * r
    if kind == "triangle":
        return np.maximum(np.abs(u) * 0.866 + v * 0.5, -v) - 0.5 * r
    if kind == "cross":
        t = 0.3 * r
        return np.minimum(np.maximum(np.abs(u) - r, np.abs(v) - t),
                          np.maximum(np.abs(u) - t, np.abs(v) - r))
    if kind == "striped_disc":
        period = np.maximum(r / 2.0, 2.5)
        return np.maximum(rad - r, -np.sin(2 * np.pi * u / period) * period / 4)
    # unseen shapes for the near-OOD set
    if kind == "ellipse":
        return np.sqrt((u / r) ** 2 + (v / (0.35 * r)) ** 2) * 0.35 * r - 0.35 * r
    if kind == "crescent":
        return np.maximum(rad - r, -(np.sqrt((u - 0.45 * r) ** 2 + v * v) - 0.8 * r))
    if kind == "ell":
        t = 0.35 * r
        arm1 = np.maximum(np.abs(u + 0.5 * r - t) - t, np.abs(v) - r)
        arm2 = np.maximum(np.abs(u) - r, np.abs(v - r + t) - t)
        return np.minimum(arm1, arm2)
    raise ValueError(kind)


def _frames(rng: np.random.Generator, n: int, size: int,
            radius: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random position, size and rotation per image: the shape's own coordinates (u, v) and r."""
    xx, yy = _grid(size)
    r = rng.uniform(*radius, (n, 1, 1))
    cx = rng.uniform(r[:, 0, 0] + 1, size - r[:, 0, 0] - 1)[:, None, None]
    cy = rng.uniform(r[:, 0, 0] + 1, size - r[:, 0, 0] - 1)[:, None, None]
    phi = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    u = (xx - cx) * np.cos(phi) + (yy - cy) * np.sin(phi)
    v = -(xx - cx) * np.sin(phi) + (yy - cy) * np.cos(phi)
    return u, v, r


def _distances(kinds: np.ndarray, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    dist = np.empty(u.shape, np.float32)
    for kind in np.unique(kinds):
        sel = kinds == kind
        dist[sel] = _signed_distance(str(kind), u[sel], v[sel], r[sel])
    return dist


def _paint(rng: np.random.Generator, canvas: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Fill the inside of each signed-distance field with a contrasting colour, anti-aliased."""
    alpha = np.clip(0.5 - dist, 0.0, 1.0)[..., None]
    colour = _contrasting_colours(rng, canvas.mean(axis=(1, 2)))[:, None, None, :]
    return canvas * (1 - alpha) + colour * alpha


def _draw(rng: np.random.Generator, kinds: np.ndarray, canvas: np.ndarray,
          radius: tuple[float, float] = (8.0, 14.0)) -> np.ndarray:
    """Paint one shape per image (kinds[i]) onto canvas (n, size, size, 3)."""
    u, v, r = _frames(rng, len(kinds), canvas.shape[1], radius)
    return _paint(rng, canvas, _distances(kinds, u, v, r))


def _morphs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Shapes half-way between two ID classes: interpolated signed-distance fields."""
    first = rng.integers(0, len(ID_CLASSES), n)
    second = (first + rng.integers(1, len(ID_CLASSES), n)) % len(ID_CLASSES)
    names = np.asarray(ID_CLASSES)
    u, v, r = _frames(rng, n, SIZE, (8.0, 14.0))
    t = rng.uniform(0.35, 0.65, (n, 1, 1))
    dist = (1 - t) * _distances(names[first], u, v, r) + t * _distances(names[second], u, v, r)
    return _paint(rng, _backgrounds(rng, n), dist)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """(n, 32, 32, 3) floats in [0, 1] to (n, 3, 32, 32) uint8."""
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8).transpose(0, 3, 1, 2).copy()


def make_id(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n labelled ID images (uint8, N x 3 x 32 x 32) and labels, balanced over ID_CLASSES."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(ID_CLASSES))
    kinds = np.asarray(ID_CLASSES)[labels]
    return _to_uint8(_draw(rng, kinds, _backgrounds(rng, n))), labels.astype(np.int64)


def make_ood(kind: str, n: int, seed: int) -> np.ndarray:
    """n OOD images of one kind: ``shapes``, ``textures`` or ``scenes`` (see module docstring)."""
    rng = np.random.default_rng(seed)
    if kind == "shapes":
        kinds = rng.choice(["ellipse", "crescent", "ell"], n)
        return _to_uint8(_draw(rng, kinds, _backgrounds(rng, n)))
    if kind == "morphs":
        return _to_uint8(_morphs(rng, n))
    if kind == "blends":  # double exposures: two or three ID images of different classes
        parts = [_draw(rng, np.asarray(ID_CLASSES)[rng.integers(0, len(ID_CLASSES), n)],
                       _backgrounds(rng, n)) for _ in range(3)]
        third = (rng.random(n) < 0.5)[:, None, None, None]
        blend = np.where(third, (parts[0] + parts[1] + parts[2]) / 3, (parts[0] + parts[1]) / 2)
        return _to_uint8(blend)
    if kind == "textures":
        return _to_uint8(_textures(rng, n))
    if kind == "scenes":  # like LSUN / Tiny-ImageNet "resize": a busy scene shrunk to 32x32
        canvas = _backgrounds(rng, n, 2 * SIZE)
        for _ in range(6):
            kinds = rng.choice(ID_CLASSES + ("ellipse", "crescent", "ell"), n)
            canvas = _draw(rng, kinds, canvas, radius=(6.0, 16.0))
        return _to_uint8(canvas.reshape(n, SIZE, 2, SIZE, 2, 3).mean(axis=(2, 4)))
    if kind == "clutter":
        return _to_uint8(_clutter(rng, n))
    raise ValueError(f"unknown synthetic kind {kind!r}; choose one of {OOD_KINDS + AUXILIARY_KINDS}")


def _clutter(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random strokes and dots on the ID backgrounds: a stand-in for OE's random web images."""
    xx, yy = _grid()
    canvas = _backgrounds(rng, n)
    for _ in range(5):
        x0, y0, x1, y1 = (rng.uniform(0, SIZE, (n, 1, 1)) for _ in range(4))
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy + 1e-6), 0, 1)
        dist = np.hypot(xx - x0 - t * dx, yy - y0 - t * dy) - rng.uniform(0.5, 2.0, (n, 1, 1))
        canvas = _paint(rng, canvas, dist)
    return canvas


def _textures(rng: np.random.Generator, n: int) -> np.ndarray:
    """Full-frame gratings and checkerboards in two random colours."""
    xx, yy = _grid()
    theta = rng.uniform(0, np.pi, (n, 1, 1))
    freq = rng.uniform(1.5, 6.0, (n, 1, 1)) * 2 * np.pi / SIZE
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    grating = 0.5 + 0.5 * np.sin(freq * u)
    checker = (np.sign(np.sin(freq * u)) * np.sign(np.sin(freq * v)) + 1) / 2
    use_checker = rng.random((n, 1, 1)) < 0.5
    t = np.where(use_checker, checker, grating)[..., None]
    c0 = rng.uniform(0, 1, (n, 1, 1, 3))
    c1 = rng.uniform(0, 1, (n, 1, 1, 3))
    return c0 + (c1 - c0) * t + rng.normal(0, 0.03, (n, SIZE, SIZE, 3))
