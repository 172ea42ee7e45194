"""NumPy code behind the ImageNet-C corruptions (imported only when one is applied).

The corruptions are those of the ``imagecorruptions`` package (1.1.2, Michaelis
et al. 2019, Apache-2.0: the reference code of ImageNet-C/CIFAR-10-C's
corruptions, made size-agnostic). Four of its nineteen functions need a fix
on current NumPy / scikit-image; they are re-stated below with the one change
each needs and otherwise line for line, so their output matches the
reference:

- ``gaussian_blur``, ``glass_blur``: scikit-image 0.19+ renamed
  ``gaussian(multichannel=True)`` to ``channel_axis=-1`` (0.26 removed the old name);
- ``fog``: its ``plasma_fractal`` allocates ``np.float_``, removed in NumPy 2;
- ``impulse_noise``: ``skimage.util.random_noise`` ignores NumPy's global seed
  (it makes a fresh ``default_rng()``), so it was not reproducible; it now
  gets a seed drawn from the seeded global generator.

Everything else calls the package's own function. The package works on one
uint8 image of at least 32x32 at a time and draws from NumPy's global random
state, so ``corrupt_batch`` loops over the batch, seeds NumPy per image from
the torch generator (restoring the caller's NumPy state afterwards), and
pads smaller images to 32 px and crops them back (see ``corrupt_batch``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

MIN_SIDE = 32  # imagecorruptions rejects smaller images
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _package():
    with warnings.catch_warnings():
        # imagecorruptions imports pkg_resources and scipy.ndimage.interpolation, both deprecated
        warnings.simplefilter("ignore")
        import imagecorruptions
        import imagecorruptions.corruptions as reference
    return imagecorruptions, reference


# -- the four fixed functions (imagecorruptions 1.1.2 with one change each) --------
def gaussian_blur(x, severity=1):
    from skimage.filters import gaussian

    c = [1, 2, 3, 4, 6][severity - 1]
    x = gaussian(np.array(x) / 255.0, sigma=c, channel_axis=-1)
    return np.clip(x, 0, 1) * 255


def glass_blur(x, severity=1):
    from skimage.filters import gaussian

    # sigma, max_delta, iterations
    c = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][severity - 1]
    x = np.uint8(gaussian(np.array(x) / 255.0, sigma=c[0], channel_axis=-1) * 255)
    x_shape = np.array(x).shape
    # locally shuffle pixels; kept as in the reference, including that assigning
    # through views makes each "swap" a copy of the neighbour into (h, w)
    for _ in range(c[2]):
        for h in range(x_shape[0] - c[1], c[1], -1):
            for w in range(x_shape[1] - c[1], c[1], -1):
                dx, dy = np.random.randint(-c[1], c[1], size=(2,))
                h_prime, w_prime = h + dy, w + dx
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(gaussian(x / 255.0, sigma=c[0], channel_axis=-1), 0, 1) * 255


def plasma_fractal(mapsize=256, wibbledecay=3):
    """Diamond-square height map in [0, 1] of side ``mapsize`` (a power of two)."""
    assert mapsize & (mapsize - 1) == 0
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100

    def wibbledmean(array):
        return array / 4 + wibble * np.random.uniform(-wibble, wibble, array.shape)

    def fillsquares():
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize] = wibbledmean(squareaccum)

    def filldiamonds():
        size = maparray.shape[0]
        drgrid = maparray[stepsize // 2 : size : stepsize, stepsize // 2 : size : stepsize]
        ulgrid = maparray[0:size:stepsize, 0:size:stepsize]
        ltsum = (drgrid + np.roll(drgrid, 1, axis=0)) + (ulgrid + np.roll(ulgrid, -1, axis=1))
        maparray[0:size:stepsize, stepsize // 2 : size : stepsize] = wibbledmean(ltsum)
        ttsum = (drgrid + np.roll(drgrid, 1, axis=1)) + (ulgrid + np.roll(ulgrid, -1, axis=0))
        maparray[stepsize // 2 : size : stepsize, 0:size:stepsize] = wibbledmean(ttsum)

    while stepsize >= 2:
        fillsquares()
        filldiamonds()
        stepsize //= 2
        wibble /= wibbledecay

    maparray -= maparray.min()
    return maparray / maparray.max()


def fog(x, severity=1):
    c = [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)][severity - 1]
    shape = np.array(x).shape
    map_size = 1 << (int(max(shape)) - 1).bit_length()
    x = np.array(x) / 255.0
    max_val = x.max()
    fractal = plasma_fractal(mapsize=map_size, wibbledecay=c[1])[: shape[0], : shape[1]]
    x += c[0] * (fractal if x.ndim < 3 or shape[2] < 3 else fractal[..., np.newaxis])
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def impulse_noise(x, severity=1):
    from skimage.util import random_noise

    c = [0.03, 0.06, 0.09, 0.17, 0.27][severity - 1]
    x = random_noise(np.array(x) / 255.0, mode="s&p", amount=c, rng=int(np.random.randint(2**31 - 1)))
    return np.clip(x, 0, 1) * 255


FIXED = {"gaussian_blur": gaussian_blur, "glass_blur": glass_blur, "fog": fog, "impulse_noise": impulse_noise}


def function(name: str):
    """The corruption function called ``name`` (the package's, or its fix)."""
    if name in FIXED:
        return FIXED[name]
    package, _reference = _package()
    return package.corruption_dict[name]


# -- batches -----------------------------------------------------------------------
def pad_to_min_side(images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """``images`` padded to at least ``MIN_SIDE`` px a side by mirroring their
    borders (replicating them where the image is too small to mirror), and the
    (top, left) offset of the original inside the result."""
    h, w = images.shape[-2:]
    pad_h, pad_w = max(0, MIN_SIDE - h), max(0, MIN_SIDE - w)
    top, left = pad_h // 2, pad_w // 2
    pads = (left, pad_w - left, top, pad_h - top)
    if not any(pads):
        return images, (0, 0)
    mode = "reflect" if max(pads[:2]) < w and max(pads[2:]) < h else "replicate"
    return F.pad(images, pads, mode=mode), (top, left)


def corrupt_batch(name: str, images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """``images`` [N, C, H, W] in [0, 1] (C = 1 or 3) corrupted one by one.

    A side below 32 px is padded to 32 by mirroring the border, corrupted, and
    cropped back, so the corruption acts at the image's own pixel scale and
    the round trip alone changes nothing. (Resizing 28 -> 32 -> 28 instead
    would blur an MNIST digit by a mean absolute 0.038, 29% of its mean pixel
    value, before any corruption.) Grey images go in as the package's
    grey-to-RGB stack and come back as the luminance of its output.
    """
    if not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got {c}")
    corrupt_one = function(name)
    from PIL import Image

    seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator).tolist()
    big, (top, left) = pad_to_min_side(images.detach().float().cpu())
    pixels = (big * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = np.empty(pixels.shape, dtype=np.float32)
    saved = np.random.get_state()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, seed in enumerate(seeds):
                np.random.seed(seed)
                rgb = np.repeat(pixels[i], 3, axis=2) if c == 1 else pixels[i]
                result = np.uint8(corrupt_one(Image.fromarray(rgb), int(severity))).astype(np.float32)
                if result.ndim == 2:
                    result = result[..., None]
                if c == 1 and result.shape[2] == 3:
                    result = result @ LUMA[:, None]
                elif c == 3 and result.shape[2] == 1:
                    result = np.repeat(result, 3, axis=2)
                out[i] = result
    finally:
        np.random.set_state(saved)
    corrupted = torch.from_numpy(out).permute(0, 3, 1, 2).div_(255.0)
    corrupted = corrupted[:, :, top : top + h, left : left + w]
    return corrupted.clamp_(0, 1).to(images.device, images.dtype)
