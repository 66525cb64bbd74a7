"""Peer enhancers for the comparison table: Zero-DCE (CVPR 2020), Zero-DCE++ (TPAMI 2021) and PairLIE (CVPR 2023).

Every network is written here from their papers and from the tensor layouts listed in
``../shared/peers/README.md``; only the released weights are read, with
``torch.load(weights_only=True)`` (tensors only, no pickled code). The weights are
research-only (CC BY-NC 4.0 per their READMEs): they are used for comparison, never shipped.

* **Zero-DCE**: seven 3x3 convolutions of 32 channels with ReLU; layers 5, 6 and 7 take
  the concatenation of the previous output with the outputs of layers 3, 2 and 1; layer 7
  gives 24 channels through tanh = eight RGB curve maps ``r_1..r_8``; the image is
  enhanced by eight light-enhancement steps ``x <- x + r_i * (x^2 - x)``. Full resolution.
* **Zero-DCE++**: the same topology with depthwise-separable convolutions (3x3 depthwise
  + 1x1 pointwise, both with bias), one 3-channel curve map reused for all eight steps.
  Its authors estimate the curve map on the input downscaled by ``scale_factor`` (12 in
  their test script, bilinear) and upsample the map back (bilinear, align_corners); with
  ``scale_factor=1`` the map is estimated at full resolution. The default here is 1:
  that is the setting that reproduces the figure in ``../shared/docs/environment.md``
  (15.14 dB / 0.566 on LOL eval15). The authors' script also crops the image to a multiple
  of the factor; here the map is instead upsampled to the exact input size, so outputs
  stay comparable to the ground truth pixel for pixel.
* **PairLIE**: three sub-networks of one shape (five 3x3 convolutions of width 64, each
  after a 1-pixel reflection pad, ReLU between them, sigmoid at the end): ``N`` removes
  noise from the input, giving ``x``; ``L`` estimates a 1-channel illumination and ``R``
  a 3-channel reflectance from ``x``; the enhanced image is ``L ** g * R``. The authors
  publish two exponents: ``g = 0.2`` (their default, peer ``pairlie``) and ``g = 0.14``
  (their LOL setting, peer ``pairlie-lol``). Full resolution, no resizing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engan.models.checkpoint import load_plain_tensors

#: Curve iterations of both networks.
ITERATIONS = 8


class ZeroDCE(nn.Module):
    """DCE-Net: seven plain 3x3 convs (32 ch), symmetric skip concatenations, 24 tanh curve maps."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, 1, 1, bias=True)

        self.e_conv1 = conv(3, width)
        self.e_conv2 = conv(width, width)
        self.e_conv3 = conv(width, width)
        self.e_conv4 = conv(width, width)
        self.e_conv5 = conv(2 * width, width)
        self.e_conv6 = conv(2 * width, width)
        self.e_conv7 = conv(2 * width, 3 * ITERATIONS)

    def curves(self, x: torch.Tensor) -> torch.Tensor:
        """The 24-channel curve-parameter maps in [-1, 1] for an RGB [0, 1] batch."""
        x1 = F.relu(self.e_conv1(x))
        x2 = F.relu(self.e_conv2(x1))
        x3 = F.relu(self.e_conv3(x2))
        x4 = F.relu(self.e_conv4(x3))
        x5 = F.relu(self.e_conv5(torch.cat([x3, x4], 1)))
        x6 = F.relu(self.e_conv6(torch.cat([x2, x5], 1)))
        return torch.tanh(self.e_conv7(torch.cat([x1, x6], 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Enhance an RGB [0, 1] NCHW batch (any size); output RGB in [0, 1]."""
        for r in torch.split(self.curves(x), 3, dim=1):
            x = x + r * (x * x - x)
        return x


class SeparableConv(nn.Module):
    """Depthwise 3x3 conv (groups = in channels) followed by a pointwise 1x1 conv, both with bias."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depth_conv = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=True)
        self.point_conv = nn.Conv2d(cin, cout, 1, 1, 0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))


class ZeroDCEPP(nn.Module):
    """Zero-DCE++: depthwise-separable DCE-Net, one 3-channel curve map reused 8 times.

    Args:
        scale_factor: the curve map is estimated on the input downscaled by this factor
            (bilinear) and upsampled back to the input size; 1 = full resolution.
    """

    def __init__(self, scale_factor: float = 1.0, width: int = 32) -> None:
        super().__init__()
        self.scale_factor = float(scale_factor)
        self.e_conv1 = SeparableConv(3, width)
        self.e_conv2 = SeparableConv(width, width)
        self.e_conv3 = SeparableConv(width, width)
        self.e_conv4 = SeparableConv(width, width)
        self.e_conv5 = SeparableConv(2 * width, width)
        self.e_conv6 = SeparableConv(2 * width, width)
        self.e_conv7 = SeparableConv(2 * width, 3)

    def curves(self, x: torch.Tensor) -> torch.Tensor:
        """The 3-channel curve map in [-1, 1], at the input's resolution."""
        h, w = x.shape[-2:]
        xs = x
        if self.scale_factor != 1:
            size = (max(1, round(h / self.scale_factor)), max(1, round(w / self.scale_factor)))
            xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x1 = F.relu(self.e_conv1(xs))
        x2 = F.relu(self.e_conv2(x1))
        x3 = F.relu(self.e_conv3(x2))
        x4 = F.relu(self.e_conv4(x3))
        x5 = F.relu(self.e_conv5(torch.cat([x3, x4], 1)))
        x6 = F.relu(self.e_conv6(torch.cat([x2, x5], 1)))
        r = torch.tanh(self.e_conv7(torch.cat([x1, x6], 1)))
        if self.scale_factor != 1:
            r = F.interpolate(r, size=(h, w), mode="bilinear", align_corners=True)
        return r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Enhance an RGB [0, 1] NCHW batch (any size); output RGB in [0, 1]."""
        r = self.curves(x)
        for _ in range(ITERATIONS):
            x = x + r * (x * x - x)
        return x


class PairLIEBranch(nn.Module):
    """One PairLIE sub-network: (reflection pad 1, 3x3 conv) x 5, ReLU between, sigmoid at the end.

    The stack is a ``Sequential`` named after the branch, with its convolutions at indices 1, 4, 7,
    10 and 13, so the state dict has the released file's names (``N_net.N_net.1.weight`` ...).
    """

    def __init__(self, name: str, cout: int, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        chans = [3, width, width, width, width, cout]
        for i in range(5):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(chans[i], chans[i + 1], 3, 1, 0, bias=True)]
            layers.append(nn.ReLU(inplace=True) if i < 4 else nn.Sigmoid())
        self.name = name
        self.add_module(name, nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.name)(x)


class PairLIE(nn.Module):
    """PairLIE: denoise (``N``), then illumination (``L``, 1 ch) times reflectance (``R``): ``L ** exponent * R``.

    Args:
        exponent: the illumination exponent ``g`` (0.2 the authors' default, 0.14 their LOL setting).
    """

    def __init__(self, exponent: float = 0.2) -> None:
        super().__init__()
        self.exponent = float(exponent)
        self.N_net, self.L_net, self.R_net = PairLIEBranch("N_net", 3), PairLIEBranch("L_net", 1), PairLIEBranch("R_net", 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Enhance an RGB [0, 1] NCHW batch (any size); output RGB in [0, 1]."""
        clean = self.N_net(x)
        return self.L_net(clean) ** self.exponent * self.R_net(clean)


@dataclass(frozen=True)
class PeerSpec:
    """A known peer: its CLI name, display label, weights file under the peers folder and builder."""

    name: str
    label: str
    weights: str
    build: Callable[..., nn.Module]


PEERS: dict[str, PeerSpec] = {
    "zero-dce": PeerSpec("zero-dce", "Zero-DCE", "zero_dce/Epoch99.pth", lambda **kw: ZeroDCE()),
    "zero-dce++": PeerSpec(
        "zero-dce++", "Zero-DCE++", "zero_dce_pp/Epoch99.pth",
        lambda scale_factor=1.0, **kw: ZeroDCEPP(scale_factor=scale_factor),
    ),
    "pairlie": PeerSpec("pairlie", "PairLIE (g 0.2)", "pairlie/PairLIE.pth", lambda **kw: PairLIE(0.2)),
    "pairlie-lol": PeerSpec("pairlie-lol", "PairLIE (g 0.14)", "pairlie/PairLIE.pth", lambda **kw: PairLIE(0.14)),
}
#: ``--peers`` value meaning every known peer whose weights are present
ALL_PEERS = "all"


class PeerError(RuntimeError):
    """A peer name is unknown or its weights do not fit the network."""


def parse_peers(spec: str | None, peers_dir: str | os.PathLike | None = None) -> list[str]:
    """``"zero-dce,pairlie"`` -> names; ``""``/``"none"`` -> []; unknown names raise :class:`PeerError`.

    ``"all"``: every known peer whose weights file is under ``peers_dir`` (none when it is not given).
    """
    if spec is None:
        return []
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if names in ([], ["none"]):
        return []
    if names == [ALL_PEERS]:
        if peers_dir is None:
            return []
        return [n for n, p in PEERS.items() if (Path(peers_dir) / p.weights).is_file()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise PeerError(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)} (or 'all', 'none')")
    return list(dict.fromkeys(names))


def load_peer(name: str, peers_dir: str | os.PathLike, scale_factor: float = 1.0) -> nn.Module:
    """Build a peer network and load its released weights (eval mode).

    Raises:
        FileNotFoundError: the weights file is absent (callers leave the peer out with a note).
        PeerError: the name is unknown, or the file does not hold this network's tensors.
    """
    if name not in PEERS:
        raise PeerError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    spec = PEERS[name]
    path = Path(peers_dir) / spec.weights
    if not path.is_file():
        raise FileNotFoundError(f"{spec.label} weights not found at {path} (pass --peers-dir to the folder that holds {spec.weights})")
    state = load_plain_tensors(path, f"{name} weights",
                               f"use the released {Path(spec.weights).name} or leave the peer out with --peers", PeerError)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = spec.build(scale_factor=scale_factor)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise PeerError(f"{path} does not hold {spec.label} weights: {str(e).splitlines()[0]}") from None
    flush_subnormals(model)
    return model.eval()


@torch.no_grad()
def flush_subnormals(model: nn.Module) -> int:
    """Set the model's subnormal float weights to zero; returns how many there were.

    The released Zero-DCE weights hold thousands of them (a quarter of some layers), and a CPU multiplies
    subnormals through a slow microcode path: Zero-DCE took 15 s per 600x400 photo instead of 0.6 s here. They are below
    1.2e-38, so no output pixel changes (checked: LOL eval15 and LIME give the same PSNR, SSIM and NIQE).
    """
    count = 0
    for p in model.parameters():
        if p.is_floating_point():
            tiny = (p != 0) & (p.abs() < torch.finfo(p.dtype).tiny)
            count += int(tiny.sum())
            p[tiny] = 0
    return count


def peer_enhance_fn(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a peer as ``uint8 HxWx3 RGB -> uint8 HxWx3 RGB`` (output clipped to [0, 1] and rounded).

    Runs channels-last (about 2x faster for the depthwise convs of Zero-DCE++ on CPU; same numbers).
    """
    model = model.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def enhance(img: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.array(img[..., :3], dtype=np.float32)).permute(2, 0, 1)[None].div_(255.0)
        y = model(x.contiguous(memory_format=torch.channels_last))[0].clamp_(0, 1).mul_(255.0).round_()
        return y.permute(1, 2, 0).to(torch.uint8).numpy()

    return enhance
