"""EnlightenGAN generator: the attention-gated U-Net (``Unet_resize_conv``).

Contract (what every exported graph carries too):

* input  ``x``: float32 RGB in [0, 1], NCHW, H and W multiples of 16;
* inside: the [-1, 1] normalisation and the attention map ``A = 1 - luma(x)``
  (Rec.601, no further normalisation, as the authors' code does);
* head ``residual`` (the authors'): ``y = x + A * r``; head ``curve`` (optional):
  an iterated per-pixel tone curve whose strengths the network predicts; head
  ``curve-residual``: both (see :class:`engan.config.GeneratorConfig`); then, with
  ``refine="gain"``, a learned stage that removes amplified noise (:class:`GainRefiner`);
* output: float RGB in [0, 1]. In ``eval()`` mode it is clamped to [0, 1], after
  the optional highlight shoulder (``knee``), and then, with ``denoise``, passed
  through a noise-adaptive local Wiener filter (:mod:`engan.models.denoise`); in
  training it is left unclamped and unfiltered, as the authors' code trains it.

Layer names follow the authors' checkpoint (``conv1_1``, ``bn1_1``, ...,
``deconv5`` ... ``conv10``), so the released ``200_net_G_A.pth`` state dict maps
onto this module (see :mod:`engan.models.checkpoint`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engan.config import PAD_MULTIPLE, GeneratorConfig
from engan.models.denoise import gaussian_kernel, gaussian_taps, laplacian_kernel, lee_filter, noise_sigma
from engan.runtime.prepost import LUMA_WEIGHTS  # Rec.601, the one set of weights (runtime, eval, losses)


def luma(x01: torch.Tensor) -> torch.Tensor:
    """Rec.601 luma of an RGB NCHW tensor (N x 1 x H x W), on the input's scale: the tensor twin of
    :func:`engan.runtime.prepost.luma` (the exported graph computes it, so it stays a torch op)."""
    r, g, b = x01[:, 0:1], x01[:, 1:2], x01[:, 2:3]
    return LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


def attention_map(x01: torch.Tensor) -> torch.Tensor:
    """Illumination attention ``1 - luma`` of an RGB [0, 1] NCHW tensor (N x 1 x H x W)."""
    return 1.0 - luma(x01)


def apply_curve(x01: torch.Tensor, alpha: torch.Tensor, iters: int) -> torch.Tensor:
    """Quadratic tone curve ``y <- y + alpha * y * (1 - y)``, ``iters`` times (Zero-DCE's LE curve).

    With ``x01`` in [0, 1] and ``alpha`` in [-1, 1] every step maps [0, 1] onto itself
    monotonically: black stays black, white stays white.
    """
    y = x01
    for _ in range(iters):
        y = y + alpha * y * (1.0 - y)
    return y


def highlight_shoulder(y: torch.Tensor, knee: float) -> torch.Tensor:
    """Roll highlights off towards white, keeping each pixel's hue (see ``GeneratorConfig.knee``).

    Pixels whose largest channel ``m`` is at most ``knee`` are unchanged; above it, RGB
    is scaled by ``f(m) / m`` with ``f(m) = knee + s * e / (e + s)``, ``e = m - knee``,
    ``s = 1 - knee``: continuous with slope 1 at the knee, approaching 1 as ``m`` grows.
    """
    s = 1.0 - knee
    m = y.amax(dim=1, keepdim=True)
    e = (m - knee).clamp(min=0.0)
    target = knee + s * e / (e + s)
    return y * torch.where(m > knee, target / m.clamp(min=1e-6), torch.ones_like(m))


def separable_blur(x: torch.Tensor, horizontal: torch.Tensor, vertical: torch.Tensor) -> torch.Tensor:
    """Depthwise blur of NCHW ``x`` by a separable kernel (C x 1 x 1 x k, then C x 1 x k x 1), borders replicated."""
    r, c = horizontal.shape[-1] // 2, x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), horizontal.to(x.dtype), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), vertical.to(x.dtype), groups=c)


class GainRefiner(nn.Module):
    """Remove what the enhancement amplified (noise, JPEG blocks, colour blotches), knowing by how much.

    A kernel-prediction stage: it can only smooth, never invent. The network (at half
    resolution, from the space-to-depth rearrangement of ``y`` and the log2 local gain
    ``luma(y) / luma(x)``) predicts four per-pixel strengths in [0, 1]; the output blends
    the luma towards its Gaussian blurs (sigma 1, then 2) and the chroma (``y - luma``)
    towards wider ones (sigma 2, then 4, since colour noise is coarse). Edges and texture
    keep strength 0 where the network sees signal; flat regions lifted by a high gain get
    smoothed. Its last layer starts at weight 0, bias -4: a near-identity (strength 0.02)
    whose bias learns a global strength from the first step.

    A gate scales every strength by the input's own noise (Immerkaer's estimate on its
    flattest 16 x 16 block, :func:`engan.models.denoise.noise_sigma`): 0 up to
    :data:`GRAIN_LEVELS` 8-bit levels, the median grain of the well-lit training photos, so
    photos no noisier than those come out exactly as without the stage, rising to 1 at
    twice that. The gate is per image, so a tiled enhancement gates each tile by its own
    flattest block.
    """

    #: Gaussian sigmas (px) of the blends: luma near/wide, chroma near/wide
    BLURS, SIGMAS = ("luma1", "luma2", "chroma1", "chroma2"), (1.0, 2.0, 2.0, 4.0)
    #: input noise (8-bit levels) below which the stage does nothing: the median of the 110 well-lit
    #: training photos (0.300; their quartiles 0.21-0.43), measured with the same estimator
    GRAIN_LEVELS = 0.30

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(13, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.conv4 = nn.Conv2d(width, 16, 3, padding=1)  # 4 strengths x 4 sub-pixel phases
        self.act = nn.LeakyReLU(0.2, inplace=True)
        for name, sigma, channels in zip(self.BLURS, self.SIGMAS, (1, 1, 3, 3)):  # fixed shapes: exportable
            taps = gaussian_taps(sigma)
            self.register_buffer(f"{name}_h", taps.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), persistent=False)
            self.register_buffer(f"{name}_v", taps.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), persistent=False)
        self.register_buffer("noise_mask", laplacian_kernel(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Hidden layers He-initialised for LeakyReLU(0.2) (no BatchNorm here, unlike the U-Net's N(0, 0.02));
        the last layer weight 0, bias -4."""
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.kaiming_normal_(conv.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.conv4.weight)
        nn.init.constant_(self.conv4.bias, -4.0)

    def _blur(self, t: torch.Tensor, name: str) -> torch.Tensor:
        return separable_blur(t, getattr(self, f"{name}_h"), getattr(self, f"{name}_v"))

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        floor = 1.0 / 255.0
        lum = luma(y)
        gain = torch.log2((lum.clamp(min=0.0) + floor) / (luma(x) + floor))
        h = torch.cat([F.pixel_unshuffle(y, 2), F.avg_pool2d(gain, 2) * 0.25], dim=1)
        h = self.act(self.conv1(h))
        h = self.act(self.conv2(h))
        h = self.act(self.conv3(h))
        levels = noise_sigma(x, self.noise_mask) * 255.0
        gate = ((levels - self.GRAIN_LEVELS) / self.GRAIN_LEVELS).clamp(0.0, 1.0)  # N x 1 x 1 x 1
        a = torch.sigmoid(F.pixel_shuffle(self.conv4(h), 2)) * gate
        chroma = y - lum
        b1, b2 = self._blur(lum, "luma1"), self._blur(lum, "luma2")
        d1, d2 = self._blur(chroma, "chroma1"), self._blur(chroma, "chroma2")
        lum = lum + a[:, 0:1] * (b1 - lum + a[:, 1:2] * (b2 - b1))
        chroma = chroma + a[:, 2:3] * (d1 - chroma + a[:, 3:4] * (d2 - d1))
        return lum + chroma


class UNetGenerator(nn.Module):
    """The EnlightenGAN generator. See the module docstring for the I/O contract."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        w1, w2, w3, w4, w5 = self.config.widths
        self.align_corners = self.config.align_corners
        act = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731

        def conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, k, stride=1, padding=k // 2, bias=True)

        # encoder
        self.conv1_1, self.bn1_1 = conv(4, w1), nn.BatchNorm2d(w1)
        self.conv1_2, self.bn1_2 = conv(w1, w1), nn.BatchNorm2d(w1)
        self.conv2_1, self.bn2_1 = conv(w1, w2), nn.BatchNorm2d(w2)
        self.conv2_2, self.bn2_2 = conv(w2, w2), nn.BatchNorm2d(w2)
        self.conv3_1, self.bn3_1 = conv(w2, w3), nn.BatchNorm2d(w3)
        self.conv3_2, self.bn3_2 = conv(w3, w3), nn.BatchNorm2d(w3)
        self.conv4_1, self.bn4_1 = conv(w3, w4), nn.BatchNorm2d(w4)
        self.conv4_2, self.bn4_2 = conv(w4, w4), nn.BatchNorm2d(w4)
        self.conv5_1, self.bn5_1 = conv(w4, w5), nn.BatchNorm2d(w5)
        self.conv5_2, self.bn5_2 = conv(w5, w5), nn.BatchNorm2d(w5)
        # decoder (resize-conv: bilinear x2 then a plain 3x3 conv)
        self.deconv5 = conv(w5, w4)
        self.conv6_1, self.bn6_1 = conv(2 * w4, w4), nn.BatchNorm2d(w4)
        self.conv6_2, self.bn6_2 = conv(w4, w4), nn.BatchNorm2d(w4)
        self.deconv6 = conv(w4, w3)
        self.conv7_1, self.bn7_1 = conv(2 * w3, w3), nn.BatchNorm2d(w3)
        self.conv7_2, self.bn7_2 = conv(w3, w3), nn.BatchNorm2d(w3)
        self.deconv7 = conv(w3, w2)
        self.conv8_1, self.bn8_1 = conv(2 * w2, w2), nn.BatchNorm2d(w2)
        self.conv8_2, self.bn8_2 = conv(w2, w2), nn.BatchNorm2d(w2)
        self.deconv8 = conv(w2, w1)
        self.conv9_1, self.bn9_1 = conv(2 * w1, w1), nn.BatchNorm2d(w1)
        self.conv9_2 = conv(w1, w1)
        self.conv10 = conv(w1, 6 if self.config.head == "curve-residual" else 3, k=1)
        self.act = act()
        self.refiner = GainRefiner(self.config.refine_width) if self.config.refine == "gain" else None
        # fixed filters of the denoise step: buffers, not parameters, and not saved (same state dict either way)
        self.register_buffer("window_kernel", gaussian_kernel(), persistent=False)
        self.register_buffer("laplacian_kernel", laplacian_kernel(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Authors' init: conv weights N(0, 0.02); BN weight N(1, 0.02), bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
        if self.refiner is not None:
            self.refiner.reset_parameters()

    def _clb(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
        # Conv -> LeakyReLU(0.2) -> BatchNorm (BN after the activation, as released)
        return bn(self.act(conv(x)))

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=self.align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Enhance ``x`` (RGB [0, 1], NCHW, H and W multiples of 16); returns RGB [0, 1]."""
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            check_input(x)
        a1 = attention_map(x)
        xn = x * 2.0 - 1.0
        h = torch.cat([xn, a1], dim=1)
        a2 = F.max_pool2d(a1, 2)
        a3 = F.max_pool2d(a2, 2)
        a4 = F.max_pool2d(a3, 2)
        a5 = F.max_pool2d(a4, 2)

        c1 = self._clb(self.conv1_2, self.bn1_2, self._clb(self.conv1_1, self.bn1_1, h))
        c2 = self._clb(self.conv2_2, self.bn2_2, self._clb(self.conv2_1, self.bn2_1, F.max_pool2d(c1, 2)))
        c3 = self._clb(self.conv3_2, self.bn3_2, self._clb(self.conv3_1, self.bn3_1, F.max_pool2d(c2, 2)))
        c4 = self._clb(self.conv4_2, self.bn4_2, self._clb(self.conv4_1, self.bn4_1, F.max_pool2d(c3, 2)))
        c5 = self._clb(self.conv5_1, self.bn5_1, F.max_pool2d(c4, 2)) * a5
        c5 = self._clb(self.conv5_2, self.bn5_2, c5)

        u = torch.cat([self.deconv5(self._up(c5)), c4 * a4], dim=1)
        u = self._clb(self.conv6_2, self.bn6_2, self._clb(self.conv6_1, self.bn6_1, u))
        u = torch.cat([self.deconv6(self._up(u)), c3 * a3], dim=1)
        u = self._clb(self.conv7_2, self.bn7_2, self._clb(self.conv7_1, self.bn7_1, u))
        u = torch.cat([self.deconv7(self._up(u)), c2 * a2], dim=1)
        u = self._clb(self.conv8_2, self.bn8_2, self._clb(self.conv8_1, self.bn8_1, u))
        u = torch.cat([self.deconv8(self._up(u)), c1 * a1], dim=1)
        u = self._clb(self.conv9_1, self.bn9_1, u)
        u = self.act(self.conv9_2(u))

        out = self.conv10(u)
        if self.config.head == "curve":
            y = apply_curve(x, torch.tanh(out), self.config.curve_iters)
        elif self.config.head == "curve-residual":
            y = apply_curve(x, torch.tanh(out[:, :3]), self.config.curve_iters) + out[:, 3:] * a1 * 0.5
        else:
            y = (out * a1 + xn + 1.0) * 0.5  # times_residual, skip=1, back to [0, 1]
        if self.refiner is not None:
            y = self.refiner(y, x)
        if not self.training:
            if self.config.knee < 1.0:
                y = highlight_shoulder(y, self.config.knee)
            y = y.clamp(0.0, 1.0)
            if self.config.denoise != "off":
                f = lee_filter(x, y, self.window_kernel, self.laplacian_kernel)
                y = f if self.config.denoise == "full" else (f + luma(y - f)).clamp(0.0, 1.0)  # chroma: keep y's luma
        return y


def check_input(x: torch.Tensor) -> None:
    """Raise a clear error when ``x`` breaks the generator's input contract."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(
            f"generator expects an RGB batch N x 3 x H x W, got shape {tuple(x.shape)}"
        )
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % PAD_MULTIPLE or w % PAD_MULTIPLE:
        raise ValueError(
            f"generator input is {h}x{w} (HxW); both sides must be multiples of {PAD_MULTIPLE}. "
            "Pad first: engan.models.pad_to_multiple(x) (or use engan.models.enhance_tensor, "
            "which pads with reflection and crops back)."
        )


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
