"""Corruptions: CURE-TSR types (torch) and the ImageNet-C family (imagecorruptions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probebench.pipeline.data import corruption_generator
from probebench.plugins.corruptions import _cure_ops, _imagenet_c_ops
from probebench.plugins.corruptions.cure_tsr import CHALLENGE_NAMES
from probebench.plugins.corruptions.cure_tsr import CORRUPTIONS as CURE
from probebench.plugins.corruptions.imagenet_c import CORRUPTIONS as IMAGENET_C


def _digits(n: int = 48) -> torch.Tensor:
    """Grey 28x28 strokes on black, like MNIST: a few random bright bars each."""
    g = torch.Generator().manual_seed(1)
    images = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        r, c = torch.randint(4, 20, (2,), generator=g).tolist()
        images[i, 0, r : r + 8, c : c + 3] = 1.0
        images[i, 0, r : r + 3, c : c + 8] = 0.8
    return images


def _photos(n: int = 48) -> torch.Tensor:
    """Smooth random RGB 32x32 images."""
    g = torch.Generator().manual_seed(2)
    return torch.nn.functional.interpolate(torch.rand(n, 3, 6, 6, generator=g), size=(32, 32), mode="bilinear")


@pytest.mark.parametrize("cls", CURE, ids=lambda c: c.name)
def test_cure_severity_is_monotone_in_mean_change(cls):
    """Each level changes images more than the one below, with a different
    random draw per level as in a run."""
    corruption = cls()
    batches = [_photos()] + ([_digits()] if cls.name != "cure-decolorization" else [])
    for images in batches:
        change = [
            (corruption(images, s, corruption_generator(0, cls.name, s)) - images).abs().mean().item()
            for s in range(1, 6)
        ]
        assert all(a < b for a, b in zip(change, change[1:])), (images.shape, change)
        assert change[0] > 0


def test_decolorization_is_the_identity_on_grey_images():
    images = _digits(4)
    out = CURE[CHALLENGE_NAMES.index("cure-decolorization")]()(images, 5, torch.Generator().manual_seed(0))
    assert torch.equal(out, images)


@pytest.mark.parametrize("cls", CURE, ids=lambda c: c.name)
def test_cure_is_pure_deterministic_and_keeps_shape_and_range(cls):
    corruption = cls()
    for images in (_photos(3), _digits(3), torch.rand(2, 3, 19, 45), torch.rand(1, 1, 9, 9)):
        before = images.clone()
        a = corruption(images, 4, torch.Generator().manual_seed(7))
        b = corruption(images, 4, torch.Generator().manual_seed(7))
        assert torch.equal(a, b)
        assert torch.equal(images, before)  # the input is not modified
        assert a.shape == images.shape and a.dtype == images.dtype
        assert a.min() >= 0 and a.max() <= 1


def test_cure_random_types_differ_with_the_seed():
    images = _photos(4)
    for name in ("noise", "rain", "snow", "shadow", "dirty-lens", "haze", "codec-error"):
        a = _cure_ops.apply(name, images, 3, torch.Generator().manual_seed(0))
        b = _cure_ops.apply(name, images, 3, torch.Generator().manual_seed(1))
        assert not torch.equal(a, b), name


def test_cure_names_follow_the_challenge_codes():
    assert CHALLENGE_NAMES[0] == "cure-decolorization" and CHALLENGE_NAMES[11] == "cure-haze"
    assert [c.name for c in CURE] == list(CHALLENGE_NAMES) and len(set(CHALLENGE_NAMES)) == 12


# -- ImageNet-C -------------------------------------------------------------------
def test_every_imagenet_c_corruption_runs_on_28px_grey_and_32px_rgb():
    """28x28 is below imagecorruptions' minimum: it is padded to 32 and cropped back."""
    grey, rgb = _digits(2), _photos(2)
    for cls in IMAGENET_C:
        for images in (grey, rgb):
            out = cls()(images, 5, torch.Generator().manual_seed(3))
            assert out.shape == images.shape and out.dtype == images.dtype, cls.name
            assert out.min() >= 0 and out.max() <= 1, cls.name
            assert (out - images).abs().mean() > 0.005, cls.name


def test_imagenet_c_is_deterministic_and_leaves_numpys_global_state_alone():
    images = _digits(3)
    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    for cls in IMAGENET_C:
        if cls.name in ("glass-blur", "frost"):
            continue  # slow; covered above and by the reference test
        a = cls()(images, 3, torch.Generator().manual_seed(5))
        b = cls()(images, 3, torch.Generator().manual_seed(5))
        assert torch.equal(a, b), cls.name
    assert np.random.random() == expected_next


def test_small_images_are_padded_by_mirroring_and_cropped_back_exactly():
    images = _digits(2)
    padded, (top, left) = _imagenet_c_ops.pad_to_min_side(images)
    assert padded.shape[-2:] == (32, 32) and (top, left) == (2, 2)
    assert torch.equal(padded[:, :, top : top + 28, left : left + 28], images)
    tiny = torch.rand(1, 3, 5, 7)  # too small to mirror: replicated instead
    padded, (top, left) = _imagenet_c_ops.pad_to_min_side(tiny)
    assert padded.shape[-2:] == (32, 32) and torch.equal(padded[:, :, top : top + 5, left : left + 7], tiny)


def test_imagenet_c_severity_grows_for_noise():
    images = _photos(8)
    cls = next(c for c in IMAGENET_C if c.name == "gaussian-noise")
    change = [(cls()(images, s, torch.Generator().manual_seed(s)) - images).abs().mean().item() for s in range(1, 6)]
    assert all(a < b for a, b in zip(change, change[1:])), change


@pytest.mark.parametrize("name", ["gaussian_blur", "glass_blur", "fog"])
def test_fixed_functions_equal_the_reference_with_its_numpy_1_api_shimmed(monkeypatch, name):
    """The fixes change only the API call that NumPy 2 / scikit-image 0.26 broke."""
    import warnings

    from PIL import Image
    from skimage.filters import gaussian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import imagecorruptions.corruptions as reference

    def old_gaussian(image, sigma=1, multichannel=None, **kwargs):
        return gaussian(image, sigma=sigma, channel_axis=-1 if multichannel else None, **kwargs)

    monkeypatch.setattr(reference, "gaussian", old_gaussian)
    monkeypatch.setattr(np, "float_", np.float64, raising=False)
    image = Image.fromarray((np.random.default_rng(0).random((34, 33, 3)) * 255).astype(np.uint8))
    for severity in (1, 5):
        np.random.seed(3)
        expected = getattr(reference, name)(image, severity)
        np.random.seed(3)
        assert np.array_equal(getattr(_imagenet_c_ops, name)(image, severity), expected)


def test_imagenet_c_names_are_the_packages_in_kebab_case():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from imagecorruptions import get_corruption_names

    assert sorted(c.name for c in IMAGENET_C) == sorted(n.replace("_", "-") for n in get_corruption_names("all"))
