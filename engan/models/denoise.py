"""Noise-adaptive smoothing of the enhanced image: a local Wiener (Lee) filter.

Brightening a dark photo multiplies its sensor noise by the same gain as its
signal. This filter removes the amplified part and nothing else, with no learned
and no tuned parameter:

1. **Noise level of the input**, per image: the absolute response of Immerkaer's
   Laplacian-difference mask ``[[1,-2,1],[-2,4,-2],[1,-2,1]]`` (J. Immerkaer, "Fast
   noise variance estimation", CVIU 1996) scaled by ``sqrt(pi/2) / 6`` is an
   unbiased estimate of a Gaussian noise sigma on a flat patch. Texture and edges
   inflate it, so it is averaged over 16 x 16 blocks and the *flattest* block
   (the minimum) is taken: a clean photo has some flat region and gets ~0, a
   noisy one has noise in every block.
2. **Noise level of the output**: ``gain * sigma``, ``gain`` the local ratio of
   output to input brightness (both Gaussian-smoothed).
3. **Lee's filter** (J.-S. Lee, "Digital image enhancement and noise filtering by
   use of local statistics", TPAMI 1980): with local mean ``m`` and variance ``v``
   of the output over a 5 x 5 Gaussian window, ``y <- m + k * (y - m)``,
   ``k = max(v - noise, 0) / v``: flat noisy regions go to their mean, edges and
   texture (``v`` well above the noise) are kept. ``v`` is the window's mean of
   ``(y - m)^2`` (not ``E[y^2] - m^2``, which cancels badly in FP16 engines).

The generator applies it to all of RGB (``denoise="full"``) or keeps its own
luma and takes only the filtered colour (``denoise="chroma"``: the colour
speckle of dark photos goes, fine luminance texture stays; see
:class:`engan.config.GeneratorConfig`).

Every step is a convolution, pooling or element-wise op, so the filter exports to
ONNX with the rest of the generator. The estimate is per image; a tiled
enhancement estimates it per tile.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: the local window: a separable 5-tap Gaussian, sigma 1 px
WINDOW_SIGMA, WINDOW_TAPS = 1.0, 5
#: side of the blocks whose flattest one sets the noise level (the padding multiple, so blocks tile the input)
NOISE_BLOCK = 16
#: Immerkaer's scale from the mean absolute mask response to a Gaussian sigma
IMMERKAER_SCALE = math.sqrt(math.pi / 2.0) / 6.0
#: smallest input brightness in the gain ratio (one 8-bit level), so black pixels do not divide by 0
MIN_LEVEL = 1.0 / 255.0
#: added to the local variance in the gain k = (v - noise) / (v + EPS): a flat window (v = 0) gets k = 0;
#: representable in FP16
EPS = 1e-6


def _gaussian(sigma: float, taps: int) -> torch.Tensor:
    """``taps`` samples of an unnormalised Gaussian centred on the middle one."""
    t = torch.arange(taps, dtype=torch.float32) - (taps - 1) / 2
    return torch.exp(-(t**2) / (2 * sigma**2))


def gaussian_taps(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius ``ceil(2 sigma)`` (the taps of a separable blur)."""
    g = _gaussian(sigma, 2 * max(1, math.ceil(2 * sigma)) + 1)
    return g / g.sum()


def gaussian_kernel(sigma: float = WINDOW_SIGMA, taps: int = WINDOW_TAPS) -> torch.Tensor:
    """A normalised ``taps`` x ``taps`` Gaussian as a depthwise RGB conv weight (3 x 1 x taps x taps)."""
    g = _gaussian(sigma, taps)
    k2 = torch.outer(g, g)
    return (k2 / k2.sum()).expand(3, 1, taps, taps).contiguous()


def laplacian_kernel() -> torch.Tensor:
    """Immerkaer's noise-estimation mask as a depthwise RGB conv weight (3 x 1 x 3 x 3)."""
    m = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    return m.expand(3, 1, 3, 3).contiguous()


def depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise convolution of an RGB NCHW tensor, borders replicated, same size out."""
    p = kernel.shape[-1] // 2
    return F.conv2d(F.pad(x, (p, p, p, p), mode="replicate"), kernel.to(x.dtype), groups=3)


def noise_sigma(x: torch.Tensor, laplacian: torch.Tensor) -> torch.Tensor:
    """Gaussian noise sigma of each image of ``x`` (N x 1 x 1 x 1), from its flattest 16 x 16 block.

    ``x``: RGB [0, 1], H and W multiples of :data:`NOISE_BLOCK`.
    """
    r = depthwise(x, laplacian).abs().mean(dim=1, keepdim=True)
    blocks = F.avg_pool2d(r, NOISE_BLOCK)
    return blocks.amin(dim=(2, 3), keepdim=True) * IMMERKAER_SCALE


def lee_filter(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, laplacian: torch.Tensor) -> torch.Tensor:
    """Remove from the enhanced ``y`` the input ``x``'s noise as amplified by the enhancement (module docstring).

    Both RGB NCHW; ``y`` in [0, 1] gives an output in [0, 1] (each pixel moves towards
    its local mean).
    """
    m = depthwise(y, window)
    d = y - m
    v = depthwise(d * d, window)
    gain = m / depthwise(x, window).clamp(min=MIN_LEVEL)
    noise = (gain * noise_sigma(x, laplacian)) ** 2
    k = (v - noise).clamp(min=0.0) / (v + EPS)
    return m + k * d
