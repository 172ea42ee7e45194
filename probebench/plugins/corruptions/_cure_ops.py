"""Torch code behind the ``cure-*`` corruptions (imported only when one is applied).

Each CURE-TSR challenge type is one effect function ``effect(x, level, g)`` on
a batch ``x`` float [N, C, H, W] in [0, 1] (C = 1 or 3), a level index 0..4
and a ``torch.Generator``; the strength of level 1..5 is one row of
``LEVELS``. Effects that share a mechanism share a helper (filtering with a
kernel, smooth random fields, sparse particles, colours), so each mechanism
is written once. Spatial sizes (blur radii, block sizes, streak lengths) scale
with the image side so that "level 3" means a comparable degradation at 28 px
and at 128 px. All randomness is drawn on the CPU from the generator, then
moved to the images' device: the same generator state gives the same output
on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Strength per level 1..5, one row per challenge type (CURE-TSR order).
LEVELS: dict[str, tuple[float, ...]] = {
    "decolorization": (0.2, 0.4, 0.6, 0.8, 1.0),  # fraction of the way to grey
    "lens-blur": (0.6, 1.0, 1.5, 2.0, 2.6),  # disk radius, px at side 32
    "codec-error": (0.04, 0.08, 0.14, 0.22, 0.32),  # DCT quantisation step
    "darkening": (0.75, 0.6, 0.45, 0.3, 0.18),  # brightness factor
    "dirty-lens": (0.25, 0.4, 0.55, 0.7, 0.85),  # dirt opacity (coverage grows too)
    "exposure": (1.5, 2.0, 2.5, 3.0, 4.0),  # exponent of the brightening curve
    "gaussian-blur": (0.5, 0.8, 1.1, 1.5, 2.0),  # sigma, px at side 32
    "noise": (0.04, 0.08, 0.12, 0.18, 0.26),  # std of additive Gaussian noise
    "rain": (0.006, 0.012, 0.02, 0.03, 0.045),  # fraction of pixels starting a streak
    "shadow": (0.2, 0.32, 0.48, 0.68, 0.9),  # darkness inside the shadow band
    "snow": (0.01, 0.02, 0.035, 0.05, 0.07),  # fraction of pixels holding a flake
    "haze": (0.3, 0.6, 0.9, 1.3, 1.8),  # extinction coefficient
}
CODEC_DROP = (0.02, 0.05, 0.1, 0.18, 0.3)  # fraction of blocks that lose all detail (DC only)
DIRT_THRESHOLD = (0.8, 0.74, 0.68, 0.62, 0.56)  # lower threshold = more of the lens covered
SNOW_VEIL = (0.05, 0.1, 0.15, 0.2, 0.3)
RAIN_LENGTH = (4.0, 5.0, 6.0, 7.0, 8.0)  # streak length, px at side 32
EXPOSURE_BLACK = (0.05, 0.1, 0.2, 0.3, 0.4)  # black level lifted by flare

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights
DIRT_RGB = (0.33, 0.28, 0.22)
HAZE_RGB = (0.85, 0.86, 0.88)


def apply(effect: str, images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    if effect not in EFFECTS:
        raise KeyError(f"unknown CURE-TSR effect {effect!r}")
    if not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, 1 or 3, H, W], got {list(images.shape)}")
    x = images.float()
    return EFFECTS[effect](x, int(severity) - 1, generator).clamp_(0.0, 1.0).to(images.dtype)


# -- shared helpers --------------------------------------------------------------
def _scale(x: torch.Tensor) -> float:
    """Image side relative to 32 px: spatial parameters are given for 32 px."""
    return min(x.shape[-2:]) / 32.0


def _rand(generator, shape, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=generator).to(like.device, like.dtype)


def _randn(generator, shape, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(like.device, like.dtype)


def _luminance(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _colour(rgb: tuple[float, float, float], like: torch.Tensor) -> torch.Tensor:
    """An RGB colour as [1, C, 1, 1] for ``like``'s channels (its luminance when C = 1)."""
    colour = torch.tensor(rgb, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
    return _luminance(colour) if like.shape[1] == 1 else colour


def _blend(x: torch.Tensor, layer: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Paint ``colour`` over ``x`` with per-pixel opacity ``layer`` [N, 1, H, W]."""
    return x * (1 - layer) + colour * layer


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
    line = torch.exp(-(grid**2) / (2 * sigma**2))
    kernel = line[:, None] * line[None, :]
    return kernel / kernel.sum()


def _disk_kernel(radius: float) -> torch.Tensor:
    """A flat disk (the bokeh of an out-of-focus lens) with anti-aliased rim."""
    half = max(1, math.ceil(radius))
    grid = torch.arange(-half, half + 1, dtype=torch.float32)
    dist = (grid[:, None] ** 2 + grid[None, :] ** 2).sqrt()
    kernel = (radius + 0.5 - dist).clamp(0, 1)
    return kernel / kernel.sum()


def _line_kernels(length: float, angles: torch.Tensor) -> torch.Tensor:
    """[N, k, k] anti-aliased line segments of ``length`` px through the centre,
    one per angle (radians from vertical)."""
    half = max(1, math.ceil(length / 2))
    grid = torch.arange(-half, half + 1, dtype=torch.float32)
    py, px = grid[:, None], grid[None, :]
    dy, dx = angles.cos().view(-1, 1, 1), angles.sin().view(-1, 1, 1)
    along = (py * dy + px * dx).clamp(-length / 2, length / 2)
    dist = ((py - along * dy) ** 2 + (px - along * dx) ** 2).sqrt()
    return (1 - dist).clamp(0, 1)


def _filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of ``x`` with ``kernel`` [k, k] (shared) or
    [N, k, k] (one per image), replicating the border."""
    n, c, h, w = x.shape
    k = kernel.shape[-1]
    pad = k // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    kernel = kernel.to(x.device, x.dtype)
    if kernel.dim() == 2:
        return F.conv2d(padded, kernel.expand(c, 1, k, k), groups=c)
    weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)  # [N*C, 1, k, k]
    out = F.conv2d(padded.reshape(1, n * c, h + 2 * pad, w + 2 * pad), weight, groups=n * c)
    return out.view(n, c, h, w)


def _smooth_field(generator, like: torch.Tensor, cells: int) -> torch.Tensor:
    """[N, 1, H, W] smooth random values in [0, 1]: uniform noise on a
    ``cells`` x ``cells`` grid, interpolated bicubically to the image."""
    n, _c, h, w = like.shape
    coarse = _rand(generator, (n, 1, cells, cells), like)
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def _particles(generator, like: torch.Tensor, density: float, kernel: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] opacity of sparse particles (rain drops, snow flakes):
    seeds at a ``density`` of pixels with random strength, spread by ``kernel``
    (shared or per image) whose peak keeps a seed's strength."""
    n, _c, h, w = like.shape
    seeds = (_rand(generator, (n, 1, h, w), like) < density).to(like.dtype)
    strength = 0.6 + 0.4 * _rand(generator, (n, 1, h, w), like)
    peak = kernel.amax(dim=(-2, -1), keepdim=True)
    return _filter(seeds * strength, kernel / peak).clamp(0, 1)


def _dct_matrix(size: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix: coefficients = D @ block @ D.T."""
    k = torch.arange(size, dtype=torch.float32)[:, None]
    i = torch.arange(size, dtype=torch.float32)[None, :]
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * size)) * math.sqrt(2 / size)
    matrix[0] /= math.sqrt(2)
    return matrix


# -- the twelve challenge types ---------------------------------------------------
def decolorization(x, level, g):
    """Blend toward the image's luminance; a 1-channel image has no colour to lose."""
    amount = LEVELS["decolorization"][level]
    return x + amount * (_luminance(x) - x)


def lens_blur(x, level, g):
    return _filter(x, _disk_kernel(LEVELS["lens-blur"][level] * _scale(x)))


def gaussian_blur(x, level, g):
    return _filter(x, _gaussian_kernel(LEVELS["gaussian-blur"][level] * _scale(x)))


def codec_error(x, level, g):
    """Block-DCT coding with coarse quantisation, and lost blocks that keep only
    their mean (as when a codec drops the detail of damaged macroblocks)."""
    n, c, h, w = x.shape
    block = int(min(8, max(2, round(min(h, w) / 8))))
    pad_h, pad_w = (-h) % block, (-w) % block
    padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    hb, wb = padded.shape[2] // block, padded.shape[3] // block
    blocks = padded.view(n, c, hb, block, wb, block).permute(0, 1, 2, 4, 3, 5)  # [N,C,hb,wb,b,b]
    dct = _dct_matrix(block).to(x.device, x.dtype)
    coef = dct @ blocks @ dct.T
    step = LEVELS["codec-error"][level]
    coef = torch.round(coef / step) * step
    lost = _rand(g, (n, 1, hb, wb, 1, 1), x) < CODEC_DROP[level]
    detail = torch.ones(block, block, dtype=x.dtype, device=x.device)
    detail[0, 0] = 0
    coef = coef * (1 - lost.to(x.dtype) * detail)
    out = (dct.T @ coef @ dct).permute(0, 1, 2, 4, 3, 5).reshape(n, c, hb * block, wb * block)
    return out[:, :, :h, :w]


def darkening(x, level, g):
    return x * LEVELS["darkening"][level]


def dirty_lens(x, level, g):
    """Soft blotches of dirt: a smooth random field above a threshold, blurred."""
    field = _smooth_field(g, x, cells=6)
    mask = ((field - DIRT_THRESHOLD[level]) / 0.08).clamp(0, 1)
    mask = _filter(mask, _gaussian_kernel(max(0.5, _scale(x))))
    return _blend(x, LEVELS["dirty-lens"][level] * mask, _colour(DIRT_RGB, x))


def exposure(x, level, g):
    """Over-exposure: a brightening curve 1 - (1 - x)^k that crowds mid-tones and
    highlights toward white without flattening them completely, over a black
    level lifted by flare."""
    black = EXPOSURE_BLACK[level]
    return black + (1 - black) * (1 - (1 - x) ** LEVELS["exposure"][level])


def noise(x, level, g):
    return x + LEVELS["noise"][level] * _randn(g, x.shape, x)


def rain(x, level, g):
    """Bright slanted streaks (one angle per image, within 20 degrees of
    vertical) over a slightly darkened scene."""
    angles = (torch.rand(len(x), generator=g) - 0.5) * math.radians(40)
    kernels = _line_kernels(RAIN_LENGTH[level] * _scale(x), angles)
    streaks = _particles(g, x, LEVELS["rain"][level], kernels)
    dimmed = x * (1 - 0.04 * (level + 1))
    return _blend(dimmed, 0.8 * streaks, _colour((0.9, 0.9, 0.92), x))


def shadow(x, level, g):
    """A straight shadow band of random direction, position and width."""
    n, _c, h, w = x.shape
    ys = torch.linspace(-1, 1, h).view(1, h, 1)
    xs = torch.linspace(-1, 1, w).view(1, 1, w)
    theta = torch.rand(n, generator=g).view(n, 1, 1) * math.pi
    centre = (torch.rand(n, generator=g).view(n, 1, 1) - 0.5) * 0.6
    width = 0.5 + 0.3 * torch.rand(n, generator=g).view(n, 1, 1)
    dist = xs * theta.cos() + ys * theta.sin() - centre
    band = torch.sigmoid((width / 2 - dist.abs()) / 0.05).unsqueeze(1).to(x.device, x.dtype)
    return x * (1 - LEVELS["shadow"][level] * band)


def snow(x, level, g):
    """A white veil and soft flakes."""
    flakes = _particles(g, x, LEVELS["snow"][level], _gaussian_kernel(0.7 * _scale(x)))
    white = _colour((1.0, 1.0, 1.0), x)
    veiled = _blend(x, torch.full_like(flakes, SNOW_VEIL[level]), white)
    return _blend(veiled, flakes, white)


def haze(x, level, g):
    """Atmospheric scattering x*t + A*(1-t), with transmission t = exp(-beta*depth)
    over a smooth random depth map."""
    depth = 0.5 + 0.5 * _smooth_field(g, x, cells=3)
    transmission = torch.exp(-LEVELS["haze"][level] * depth)
    return _blend(x, 1 - transmission, _colour(HAZE_RGB, x))


EFFECTS = {
    "decolorization": decolorization,
    "lens-blur": lens_blur,
    "codec-error": codec_error,
    "darkening": darkening,
    "dirty-lens": dirty_lens,
    "exposure": exposure,
    "gaussian-blur": gaussian_blur,
    "noise": noise,
    "rain": rain,
    "shadow": shadow,
    "snow": snow,
    "haze": haze,
}
