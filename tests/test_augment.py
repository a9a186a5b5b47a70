import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from scipy.stats import ks_2samp
from torchvision.transforms import InterpolationMode

from mimlib import PostMixAugment, multi_input_mixup
from mimlib.augment import (adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation,
                            affine, color_jitter)
from mimlib.data import load_id
from mimlib.images import CIFAR_MEAN, CIFAR_STD, denormalize, normalize
from mimlib.errors import ConfigError

REFERENCE_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    """Mixed synthetic images in [0, 1]: what the augmentation sees during MIM."""
    x = normalize(load_id("synthetic", "test").images[:256])
    return denormalize(multi_input_mixup(x, 3, generator=torch.Generator().manual_seed(0)))


def test_each_operation_matches_torchvision_on_every_image(pixels: torch.Tensor) -> None:
    aug = PostMixAugment()
    params = aug.sample(64, 32, 32, generator=torch.Generator().manual_seed(1))
    x = pixels[:64]
    ours = [adjust_brightness(x, params.brightness), adjust_contrast(x, params.contrast),
            adjust_saturation(x, params.saturation), adjust_hue(x, params.hue)]
    factors = [params.brightness, params.contrast, params.saturation, params.hue]
    warped = affine(x, params.angle, params.tx, params.ty)
    for i in range(64):
        for op, out, f in zip(REFERENCE_OPS, ours, factors):
            torch.testing.assert_close(out[i], op(x[i], f[i].item()), atol=2e-6, rtol=0)
        ref = TF.affine(x[i], angle=params.angle[i].item(),
                        translate=[int(params.tx[i]), int(params.ty[i])], scale=1.0,
                        shear=[0.0, 0.0], interpolation=InterpolationMode.NEAREST, fill=0)
        torch.testing.assert_close(warped[i], ref, atol=1e-6, rtol=0)


def test_colour_jitter_applies_each_images_own_order(pixels: torch.Tensor) -> None:
    params = PostMixAugment().sample(32, 32, 32, generator=torch.Generator().manual_seed(2))
    out = color_jitter(pixels[:32], params)
    factors = [params.brightness, params.contrast, params.saturation, params.hue]
    for i in range(32):
        ref = pixels[i]
        for op_index in params.order[i].tolist():
            ref = REFERENCE_OPS[op_index](ref, factors[op_index][i].item())
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
    assert len({tuple(o) for o in params.order.tolist()}) > 5  # orders differ between images


def test_parameters_are_drawn_per_image_within_torchvisions_ranges() -> None:
    p = PostMixAugment().sample(5000, 32, 32, generator=torch.Generator().manual_seed(3))
    for values, lo, hi in [(p.brightness, 0.5, 1.5), (p.contrast, 0.7, 1.3),
                           (p.saturation, 0.7, 1.3), (p.hue, -0.3, 0.3), (p.angle, -90, 90),
                           (p.tx, -6, 6), (p.ty, -6, 6)]:
        assert lo <= values.min() and values.max() <= hi
        assert values.unique().numel() > 10  # not one draw for the whole batch
        # uniform on [lo, hi]: the mean is the midpoint
        assert abs(values.float().mean().item() - (lo + hi) / 2) < 0.03 * (hi - lo)
    assert torch.equal(p.tx, p.tx.round())


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_each_image_is_augmented_with_probability_p(p: float, pixels: torch.Tensor) -> None:
    x = normalize(pixels).repeat(8, 1, 1, 1)  # 2048 images
    out = PostMixAugment(p=p)(x, generator=torch.Generator().manual_seed(4))
    changed = (out - x).abs().flatten(1).amax(1) > 1e-6
    rate = changed.float().mean().item()
    assert abs(rate - p) < 4 * np.sqrt(max(p * (1 - p), 1e-4) / len(x))
    if p == 0.0:
        assert torch.equal(out, x)


def test_works_on_normalised_inputs_and_fills_with_black() -> None:
    white = normalize(torch.ones(1, 3, 32, 32))
    aug = PostMixAugment(colour=False)
    params = aug.sample(1, 32, 32, generator=torch.Generator().manual_seed(0))
    params.angle[:] = 45.0
    out = denormalize(aug.apply_params(white, params))
    corner = out[0, :, 0, 0]
    torch.testing.assert_close(corner, torch.zeros(3), atol=1e-5, rtol=0)  # black fill
    torch.testing.assert_close(out[0, :, 16, 16], torch.ones(3), atol=1e-5, rtol=0)


def _per_image_stats(batch: torch.Tensor) -> dict[str, np.ndarray]:
    hsv_max, hsv_min = batch.amax(1), batch.amin(1)
    return {"mean": batch.mean((1, 2, 3)).numpy(), "std": batch.std((1, 2, 3)).numpy(),
            "black": (batch.amax(1) < 1 / 255).float().mean((1, 2)).numpy(),
            "chroma": (hsv_max - hsv_min).mean((1, 2)).numpy()}


def test_matches_the_authors_pil_pipeline_in_distribution(pixels: torch.Tensor) -> None:
    """The authors' per-image PIL round trip and ours give the same per-image statistics."""
    torch.manual_seed(5)
    authors = T.Compose([T.ColorJitter(brightness=0.5, contrast=0.3, saturation=0.3, hue=0.3),
                         T.RandomAffine((-90, 90), translate=(0.2, 0.2)), T.ToTensor()])
    x = pixels.repeat(2, 1, 1, 1)  # 512 images
    reference = torch.stack([authors(TF.to_pil_image(img)) for img in x])
    ours = denormalize(PostMixAugment(p=1.0, quantize=True)(
        normalize(x), generator=torch.Generator().manual_seed(6))).clamp(0, 1)
    ref_stats, our_stats = _per_image_stats(reference), _per_image_stats(ours)
    for key in ref_stats:
        result = ks_2samp(ref_stats[key], our_stats[key])
        assert result.pvalue > 1e-3, (key, result)
    # the no-augmentation baseline differs clearly: the test can fail
    plain_stats = _per_image_stats(x)
    assert ks_2samp(ref_stats["black"], plain_stats["black"]).pvalue < 1e-6


@pytest.mark.parametrize("kwargs", [{"p": 1.5}, {"p": -0.1}, {"hue": 0.7}, {"translate": 2.0},
                                    {"interpolation": "cubic"}, {"brightness": -1}])
def test_bad_parameters_are_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        PostMixAugment(**kwargs)


def test_default_normalisation_is_the_papers() -> None:
    assert CIFAR_MEAN == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255))
    assert CIFAR_STD == pytest.approx((63.0 / 255, 62.1 / 255, 66.7 / 255))


def test_the_sync_free_accelerator_path_equals_the_grouped_cpu_path(pixels) -> None:
    """On accelerators colour jitter selects among all four adjustments per image instead of
    grouping images (grouping makes the host wait); both give the same images."""
    params = PostMixAugment().sample(64, 32, 32, generator=torch.Generator().manual_seed(7))
    grouped = color_jitter(pixels[:64], params, grouped=True)
    selected = color_jitter(pixels[:64], params, grouped=False)
    torch.testing.assert_close(selected, grouped, atol=1e-6, rtol=0)
