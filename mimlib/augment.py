"""Post-mix augmentation on batched tensors, with random parameters drawn per image.

The authors augment every mixed image through PIL with torchvision's ``ColorJitter(0.5, 0.3,
0.3, 0.3)`` followed by ``RandomAffine((-90, 90), translate=(0.2, 0.2))`` (nearest neighbour,
black fill). This module does the same on a whole batch on its device: one draw of
(brightness, contrast, saturation, hue, order of the four, angle, shift) per image, vectorised,
with the colour operations and the affine warp written to match
``torchvision.transforms.functional`` on tensors. ``torchvision.transforms.v2`` would draw one set
of parameters for the whole batch, which is a different augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import choice, flag, interval, non_negative, probability
from .images import CIFAR_MEAN, CIFAR_STD, denormalize, normalize
from .errors import ConfigError
from .models import Normalization

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
INTERPOLATIONS = ("nearest", "bilinear")


@dataclass
class AugmentParams:
    """Per-image parameters of one augmentation draw (every field has length N)."""

    apply: Tensor  # bool: whether the image is augmented at all
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    order: Tensor  # (N, 4) permutation of (brightness, contrast, saturation, hue)
    angle: Tensor  # degrees, counter-clockwise
    tx: Tensor  # pixels, integer-valued as in torchvision
    ty: Tensor


@dataclass
class PostMixAugment:
    """ColorJitter then RandomAffine, per image, with probability ``p``, on normalised batches.

    ``colour`` and ``affine`` switch the two halves on and off (the augmentation ablation).
    ``quantize`` emulates the authors' PIL round trip: pixels are truncated to 8 bits on the way
    in (``to_pil_image``) and rounded to 8 bits on the way out. ``interpolation`` is ``nearest``
    (torchvision's default, the authors') or ``bilinear``.
    """

    p: float = 1.0
    brightness: float = 0.5
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.3
    degrees: float = 90.0
    translate: float = 0.2
    colour: bool = True
    affine: bool = True
    quantize: bool = False
    interpolation: str = "nearest"
    mean: Sequence[float] = CIFAR_MEAN
    std: Sequence[float] = CIFAR_STD

    def __post_init__(self) -> None:
        probability(self.p, "augmentation probability p")
        for name in ("brightness", "contrast", "saturation"):  # nan gave NaN images
            non_negative(getattr(self, name), f"{name} jitter")
        interval(self.hue, "hue jitter", 0, 0.5)
        non_negative(self.degrees, "degrees (rotation range)")  # inf gave black images
        interval(self.translate, "translate", 0, 1)
        for name in ("colour", "affine", "quantize"):
            flag(getattr(self, name), name)
        choice(self.interpolation, "interpolation", INTERPOLATIONS)
        Normalization(tuple(self.mean), tuple(self.std))  # 3 finite means, 3 finite stds > 0

    def sample(self, n: int, height: int, width: int, *,
               generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> AugmentParams:
        """Draw the parameters of n images, each independently (torchvision's ranges)."""
        gdev = generator.device if generator is not None else torch.device(device)

        def uniform(lo: float, hi: float) -> Tensor:
            return (torch.rand(n, generator=generator, device=gdev) * (hi - lo) + lo).to(device)

        def shift(limit: float) -> Tensor:
            return torch.round(uniform(-limit, limit))

        order = torch.rand((n, 4), generator=generator, device=gdev).argsort(dim=1).to(device)
        return AugmentParams(
            apply=(torch.rand(n, generator=generator, device=gdev) < self.p).to(device),
            brightness=uniform(max(0.0, 1 - self.brightness), 1 + self.brightness),
            contrast=uniform(max(0.0, 1 - self.contrast), 1 + self.contrast),
            saturation=uniform(max(0.0, 1 - self.saturation), 1 + self.saturation),
            hue=uniform(-self.hue, self.hue),
            order=order,
            angle=uniform(-self.degrees, self.degrees),
            tx=shift(self.translate * width),
            ty=shift(self.translate * height),
        )

    def __call__(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Augment a normalised batch (N, 3, H, W); returns a normalised batch."""
        _check_batch(x)
        params = self.sample(x.shape[0], x.shape[2], x.shape[3], generator=generator,
                             device=x.device)
        return self.apply_params(x, params)

    def apply_params(self, x: Tensor, params: AugmentParams) -> Tensor:
        """Apply given per-image parameters to a normalised batch (deterministic)."""
        _check_batch(x)
        pixels = denormalize(x, self.mean, self.std)
        if self.quantize:  # to_pil_image: mul(255).byte() truncates
            pixels = torch.floor(pixels.clamp(0, 1) * 255) / 255
        out = pixels
        if self.colour:
            out = color_jitter(out, params)
        if self.affine:
            out = affine(out, params.angle, params.tx, params.ty, self.interpolation)
        if self.quantize:  # PIL keeps 8-bit pixels, ToTensor divides by 255
            out = torch.round(out.clamp(0, 1) * 255) / 255
        keep = params.apply.view(-1, 1, 1, 1)
        return torch.where(keep, normalize(out, self.mean, self.std), x)


def _check_batch(x: object) -> None:
    """Refuse a batch the colour and affine operations cannot read as N RGB images."""
    if not (isinstance(x, Tensor) and x.is_floating_point() and x.ndim == 4
            and x.shape[1] == 3):
        given = (f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor)
                 else type(x).__name__)
        raise ConfigError(f"PostMixAugment augments a normalised floating-point batch "
                          f"(N, 3, H, W), got {given}; turn uint8 RGB images into model inputs "
                          "first (mimlib.normalize), and add the batch dimension to one image")


# --------------------------------------------------------------------------- colour

def _blend(img: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    f = factor.view(-1, 1, 1, 1).to(img.dtype)
    return (f * img + (1 - f) * other).clamp(0, 1)


def grayscale(img: Tensor) -> Tensor:
    """torchvision's luma: 0.2989 R + 0.587 G + 0.114 B, shape (N, 1, H, W)."""
    r, g, b = img.unbind(dim=1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def adjust_brightness(img: Tensor, factor: Tensor) -> Tensor:
    return _blend(img, torch.zeros_like(img), factor)


def adjust_contrast(img: Tensor, factor: Tensor) -> Tensor:
    mean = grayscale(img).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(img, mean, factor)


def adjust_saturation(img: Tensor, factor: Tensor) -> Tensor:
    return _blend(img, grayscale(img), factor)


def adjust_hue(img: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of every image by its own shift (fraction of a turn), via HSV."""
    h, s, v = _rgb_to_hsv(img)
    h = torch.remainder(h + shift.view(-1, 1, 1).to(img.dtype), 1.0)
    return _hsv_to_rgb(h, s, v)


def _rgb_to_hsv(img: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r, g, b = img.unbind(dim=1)
    maxc = img.amax(dim=1)
    minc = img.amin(dim=1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_divisor = torch.where(eqc, ones, cr)
    rc = (maxc - r) / cr_divisor
    gc = (maxc - g) / cr_divisor
    bc = (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.remainder((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return h, s, maxc


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    sector = i.unsqueeze(1) == torch.arange(6, device=i.device).view(1, -1, 1, 1)
    table = (torch.stack((v, q, p, p, t, v), dim=1), torch.stack((t, v, v, q, p, p), dim=1),
             torch.stack((p, p, t, v, v, q), dim=1))
    return torch.stack([(sector * c).sum(dim=1) for c in table], dim=1).to(v.dtype)


def color_jitter(img: Tensor, params: AugmentParams, grouped: bool | None = None) -> Tensor:
    """The four colour adjustments in each image's own random order, on [0, 1] pixels.

    At each of the four stages every image undergoes exactly one adjustment. On the CPU the
    images are grouped by the adjustment they need (each computed once); on an accelerator all
    four are computed and selected per image, which costs more arithmetic but never makes the
    host wait for the device. ``grouped`` forces one way (None: by device).
    """
    grouped = img.device.type == "cpu" if grouped is None else grouped
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    factors = (params.brightness, params.contrast, params.saturation, params.hue)
    out = img.clone()
    for stage in range(4):
        chosen = params.order[:, stage]
        if grouped:
            for op_index, (op, factor) in enumerate(zip(ops, factors)):
                idx = (chosen == op_index).nonzero().flatten()
                if idx.numel():
                    out[idx] = op(out[idx], factor[idx])
        else:
            current, selected = out, chosen.view(-1, 1, 1, 1)
            for op_index, (op, factor) in enumerate(zip(ops, factors)):
                out = torch.where(selected == op_index, op(current, factor), out)
    return out


# --------------------------------------------------------------------------- geometry

def affine(img: Tensor, angle: Tensor, tx: Tensor, ty: Tensor,
           interpolation: str = "nearest") -> Tensor:
    """Rotate each image by its angle (degrees, counter-clockwise) about the centre, then shift.

    Pixels from outside the image are black (zero). The sampling grid is the one of
    ``torchvision.transforms.functional.affine`` on tensors, so a single image matches it.
    """
    n, _, h, w = img.shape
    rot = torch.deg2rad(angle.to(torch.float32))
    cos, sin = torch.cos(rot), torch.sin(rot)
    tx, ty = tx.to(torch.float32), ty.to(torch.float32)
    # inverse of "rotate about the centre, then translate", as torchvision builds it
    theta = torch.stack([
        torch.stack([cos, sin, cos * -tx + sin * -ty], dim=1),
        torch.stack([-sin, cos, -sin * -tx + cos * -ty], dim=1),
    ], dim=1)  # (N, 2, 3)
    xs = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, w, device=img.device)
    ys = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, h, device=img.device)
    base = torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w),
                        torch.ones(h, w, device=img.device)], dim=-1).view(1, h * w, 3)
    scale = torch.tensor([0.5 * w, 0.5 * h], device=img.device)
    grid = base.expand(n, -1, -1).bmm(theta.transpose(1, 2) / scale).view(n, h, w, 2)
    out = F.grid_sample(img.float(), grid, mode=interpolation, padding_mode="zeros",
                        align_corners=False)
    return out.to(img.dtype)

