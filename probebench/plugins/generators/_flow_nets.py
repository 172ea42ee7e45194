"""The nn.Module side of the flow generators (imported only when a flow is built).

Both flows are ``normflows.MultiscaleFlow`` models wrapped in ``ImageFlow``,
which gives them the probebench Generator interface. normflows' naming is the
reverse of probebench's: its ``forward``/``forward_and_log_det`` map latents
to images (probebench ``decode``), its ``inverse``/``inverse_and_log_det`` map
images to latents (``encode``).

Numerical stability: every affine coupling scales by ``exp(b * tanh(s / b))``,
bounded to [e^-b, e^b] in both directions, so neither decoding an optimised
latent nor encoding during training can overflow through a scale. (Glow's
usual ``scale_map="sigmoid"`` divides by sigmoid(s + 2) when decoding and
reached inf under latent optimisation; ``"sigmoid_inv"`` moves that division
into encoding, where training here drove it to NaN within 4 epochs.)
"""

from __future__ import annotations

import math
import warnings

import normflows as nf
import torch
from torch import nn

from probebench.errors import UserError

KERNELS = (3, 1, 3)  # the coupling networks: conv3x3 -> conv1x1 -> conv3x3 (zero-initialised)


def _conv_net(in_channels: int, hidden: int, out_channels: int) -> nn.Module:
    return nf.nets.ConvNet2d((in_channels, hidden, hidden, out_channels), KERNELS, leaky=0.0, init_zeros=True)


class BoundedLogScale(nn.Module):
    """Wraps a coupling network whose output interleaves (shift, log-scale)
    channels, as normflows' ``AffineCoupling`` reads them, and bounds every
    log-scale to (-bound, bound) with ``bound * tanh(s / bound)``."""

    def __init__(self, net: nn.Module, bound: float):
        super().__init__()
        self.net = net
        self.bound = bound

    def forward(self, x):
        params = self.net(x)
        shift, log_scale = params[:, 0::2], params[:, 1::2]
        log_scale = self.bound * torch.tanh(log_scale / self.bound)
        return torch.stack([shift, log_scale], dim=2).flatten(1, 2)


class CheckerboardCoupling(nf.flows.Flow):
    """RealNVP affine coupling with a spatial checkerboard mask on a full
    [C, H, W] tensor: the pixels where the mask is 1 condition an affine map of
    the others. Written here because normflows' checkerboard ``Split`` packs
    the kept pixels along the width (it needs an even width, so 7x7 fails, and
    its convolution then sees a sheared neighbourhood)."""

    def __init__(self, channels: int, height: int, width: int, hidden: int, parity: int, bound: float):
        super().__init__()
        rows = torch.arange(height).view(-1, 1)
        cols = torch.arange(width).view(1, -1)
        mask = ((rows + cols) % 2 == parity).float().view(1, 1, height, width)
        self.register_buffer("mask", mask)
        self.net = _conv_net(channels + 1, hidden, 2 * channels)
        self.bound = bound

    def _params(self, z):
        mask = self.mask
        h = self.net(torch.cat([z * mask, mask.expand(len(z), 1, -1, -1)], dim=1))
        shift, log_scale = h[:, 0::2], h[:, 1::2]
        log_scale = self.bound * torch.tanh(log_scale / self.bound) * (1 - mask)
        return shift * (1 - mask), log_scale

    def forward(self, z):  # latent -> image direction (decode)
        shift, log_scale = self._params(z)
        return z * torch.exp(log_scale) + shift, log_scale.sum(dim=(1, 2, 3))

    def inverse(self, z):  # image -> latent direction (encode)
        shift, log_scale = self._params(z)
        return (z - shift) * torch.exp(-log_scale), -log_scale.sum(dim=(1, 2, 3))


def _channel_coupling(channels: int, hidden: int, parity: int, bound: float) -> nf.flows.Flow:
    """normflows' channel-split affine coupling with a bounded exp scale."""
    mode = "channel" if parity == 0 else "channel_inv"
    half_in = (channels + 1) // 2 if mode == "channel" else channels // 2
    half_out = channels - half_in
    net = BoundedLogScale(_conv_net(half_in, hidden, 2 * half_out), bound)
    return nf.flows.AffineCouplingBlock(net, scale=True, scale_map="exp", split_mode=mode)


def check_shape(shape, levels: int, name: str) -> tuple[int, int, int]:
    """(C, H, W) if ``levels`` squeezes fit, else a UserError naming the sizes that do."""

    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise UserError(f"generator {name!r}: expected an image shape (C, H, W), got {tuple(shape)}")
    channels, height, width = (int(s) for s in shape)
    step = 2**levels
    if height % step or width % step:
        raise UserError(
            f"generator {name!r}: images of {channels}x{height}x{width} do not fit {levels} levels "
            f"(height and width must be multiples of 2^{levels} = {step}, e.g. 28x28 with levels <= 2, "
            f"32x32 with levels <= 5); set the generator's 'levels' option or resize the images"
        )
    return channels, height, width


def _multiscale(shape, levels: int, encode_steps) -> tuple[nf.MultiscaleFlow, list[tuple[int, ...]]]:
    """A MultiscaleFlow from ``encode_steps(level, c, h, w) -> [flows]``, the flows one
    level applies in the encoding direction to a [c, h, w] input (a Squeeze
    included), followed by a per-element affine; every level but the last then
    factors out half its channels.
    Returns the model and its latent shapes, deepest level first (normflows' order)."""
    c, h, w = shape
    levels_flows, latent_shapes = [], []
    for level in range(levels):
        steps = encode_steps(level, c, h, w)
        c, h, w = 4 * c, h // 2, w // 2
        # a learned per-element affine before the latents leave: lets the model
        # give each latent unit variance (bounded couplings cannot stretch the
        # near-constant background that far); constant once trained, so decoding stays linear in it
        steps.append(nf.flows.AffineConstFlow((c, h, w)))
        last = level == levels - 1
        latent_shapes.append((c, h, w) if last else (c // 2, h, w))
        levels_flows.append(list(reversed(steps)))  # normflows applies a level's list when decoding
        if not last:
            c = c // 2
    flows = list(reversed(levels_flows))
    shapes = list(reversed(latent_shapes))
    q0 = [nf.distributions.DiagGaussian(s, trainable=False) for s in shapes]
    merges = [nf.flows.Merge() for _ in range(levels - 1)]
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False), shapes


def build_glow(shape, levels: int, blocks: int, hidden: int, bound: float) -> tuple[nf.MultiscaleFlow, list]:
    """Glow: per level squeeze, then ``blocks`` x (actnorm, invertible 1x1 conv,
    affine coupling), then split. The coupling is normflows' with the "exp"
    scale map and its log-scale bounded to (-bound, bound) (see module doc)."""

    def glow_block(channels: int) -> nf.flows.Flow:
        block = nf.flows.GlowBlock(channels, hidden, scale=True, scale_map="exp", split_mode="channel")
        coupling = block.flows[0].flows[1]  # AffineCouplingBlock = [Split, AffineCoupling, Merge]
        coupling.param_map = BoundedLogScale(coupling.param_map, bound)
        return block

    def steps(_level, c, _h, _w):
        return [nf.flows.Squeeze()] + [glow_block(4 * c) for _ in range(blocks)]

    with warnings.catch_warnings():  # normflows' Invertible1x1Conv calls the deprecated torch.lu once
        warnings.simplefilter("ignore")
        return _multiscale(shape, levels, steps)


def build_realnvp(shape, levels: int, blocks: int, hidden: int, bound: float) -> tuple[nf.MultiscaleFlow, list]:
    """RealNVP (Dinh et al. 2017) without batch norm: per level ``blocks``
    checkerboard couplings, squeeze, ``blocks`` channel couplings, split; the
    last level adds ``blocks`` checkerboard couplings at the smallest scale."""
    levels_total = levels

    def steps(level, c, h, w):
        out = [CheckerboardCoupling(c, h, w, hidden, k % 2, bound) for k in range(blocks)]
        out.append(nf.flows.Squeeze())
        out += [_channel_coupling(4 * c, hidden, k % 2, bound) for k in range(blocks)]
        if level == levels_total - 1:
            out += [CheckerboardCoupling(4 * c, h // 2, w // 2, hidden, k % 2, bound) for k in range(blocks)]
        return out

    return _multiscale(shape, levels, steps)


class ImageFlow(nn.Module):
    """A multiscale flow on images in [0, 1], with the probebench Generator interface.

    Pixel model: an 8-bit image x is dequantised to y = (255 x + u) / 256 with
    u ~ U[0, 1)^D, then a logit pre-transform (normflows ``Logit``, ``alpha``)
    maps y to the real line before the flow. ``encode`` uses the bin centre
    u = 1/2, so ``decode(encode(x)) == x`` up to float rounding.

    Latents are one flat float tensor per sample, ``[N, D]`` with D = C*H*W,
    distributed N(0, I) under the model: the multiscale latents (deepest level
    first, ``latent_shapes``) flattened and concatenated.
    """

    def __init__(self, flow: nf.MultiscaleFlow, shape, latent_shapes, alpha: float):
        super().__init__()
        self.flow = flow
        self.flow.transform = nf.transforms.Logit(alpha)
        self.shape = tuple(shape)
        self.latent_shapes = [tuple(s) for s in latent_shapes]
        self.dim = math.prod(self.shape)

    # -- latents ---------------------------------------------------------------
    def _flatten(self, parts) -> torch.Tensor:
        return torch.cat([p.flatten(1) for p in parts], dim=1)

    def _unflatten(self, z: torch.Tensor) -> list[torch.Tensor]:
        sizes = [math.prod(s) for s in self.latent_shapes]
        return [part.view(len(z), *s) for part, s in zip(z.split(sizes, dim=1), self.latent_shapes)]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, C, H, W] in [0, 1] -> latents [N, D]."""
        y = (x.clamp(0, 1) * 255 + 0.5) / 256
        parts, _ = self.flow.inverse_and_log_det(y)
        return self._flatten(parts)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [N, D] -> images [N, C, H, W] in [0, 1].

        Values are clamped to [0, 1] with a straight-through gradient (the
        gradient of the unclamped value), so latent optimisation still sees
        the pixels that hit the bounds."""
        y, _ = self.flow.forward_and_log_det(self._unflatten(z))
        x = (y * 256 - 0.5) / 255
        return x + (x.clamp(0, 1) - x).detach()

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I) per sample [N], for latent-space regularisers."""
        return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(dim=1)

    # -- likelihood --------------------------------------------------------------
    def dequantise(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.rand(x.shape, generator=generator).to(x.device)  # a CPU generator, any device
        return (x * 255 + noise) / 256

    def log_prob(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample log density [N] in nats of the dequantised image
        y = (255 x + u)/256 on [0, 1]^D (u drawn from ``generator``)."""
        return self.flow.log_prob(self.dequantise(x, generator), None)

    def bits_per_dim(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample bits per dimension [N] of the 8-bit image: -(log p(y) - D ln 256) / (D ln 2)."""
        return -(self.log_prob(x, generator) - self.dim * math.log(256)) / (self.dim * math.log(2))

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images [n, C, H, W] decoded from N(0, temperature^2 I) latents."""
        device = next(self.parameters()).device
        z = torch.randn((n, self.dim), generator=generator) * temperature
        return self.decode(z.to(device))
