"""Typed configuration for engan: one place for every knob.

Presets are frozen dataclasses; derive variants with :func:`dataclasses.replace`.
Every config is saved as JSON next to each checkpoint and embedded in exported
artefacts, so a model can always be rebuilt from its files.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

#: Spatial multiple the generator needs (four 2x poolings).
PAD_MULTIPLE = 16

#: Output heads of the generator (see :class:`GeneratorConfig`).
GENERATOR_HEADS = ("residual", "curve", "curve-residual")
#: Inference-time noise removal of the generator (see :class:`GeneratorConfig`).
DENOISE_MODES = ("off", "chroma", "full")


@dataclass(frozen=True)
class GeneratorConfig:
    """EnlightenGAN generator (``Unet_resize_conv`` with self-attention).

    Attributes:
        base_width: channels of the first stage; stages use 1-2-4-8-16 x this.
            32 is the paper/released model (8,636,675 parameters).
        align_corners: bilinear upsampling mode; True matches the released weights
            (trained with torch 0.3.1, whose bilinear upsample behaved this way).
        head: how the last layer's channels become the output. ``residual`` (the
            authors'): ``y = x + A * r``, a gated residual added to the input.
            ``curve`` (not in the paper): the channels are per-pixel, per-channel
            curve strengths ``alpha = tanh(.)`` of a quadratic tone curve
            ``y <- y + alpha * y * (1 - y)`` applied ``curve_iters`` times, as
            Zero-DCE++ does. A curve maps [0, 1] onto [0, 1] monotonically, so
            bright pixels cannot be pushed past white and a smooth alpha field
            still brightens a dark pixel beside a bright one differently (the
            gain depends on the pixel's own value): no halos from a smooth gain.
            ``curve-residual``: both, ``y = curve(x) + A * r / 2`` (the last layer
            has 6 channels), so the residual can add detail and remove noise that
            a per-pixel curve can only amplify.
        curve_iters: iterations of the curve (``curve`` and ``curve-residual`` heads).
        knee: inference-time highlight shoulder. 1.0 (the authors'): the output is
            clamped to [0, 1]. Below 1: a pixel whose largest channel ``m`` exceeds
            ``knee`` has its RGB scaled (hue kept) so that ``m`` follows
            ``knee + (1 - knee) * e / (e + 1 - knee)``, ``e = m - knee``: highlights
            roll off towards white instead of clipping one channel. Applied in
            ``eval()`` mode only (so in every exported graph); training is unchanged.
        denoise: inference-time noise removal (not in the paper). ``off``: none.
            ``full``: after the clamp, a local Wiener (Lee) filter removes the input's
            sensor noise as amplified by the enhancement, with the noise level
            estimated from each input image (:mod:`engan.models.denoise`; no learned
            or tuned parameter). ``chroma``: the same filter, but the output keeps its
            own luma and takes only the filtered colour (removes colour speckle, keeps
            luminance texture). Like ``knee``, applied in ``eval()`` mode only (so in
            every exported graph); training is unchanged.
    """

    base_width: int = 32
    align_corners: bool = True
    head: str = "residual"
    curve_iters: int = 8
    knee: float = 1.0
    denoise: str = "off"

    def __post_init__(self) -> None:
        if not 0.5 <= float(self.knee) <= 1.0:
            raise ValueError(f"knee must be in [0.5, 1] (1 = plain clamp), got {self.knee}")
        if self.head not in GENERATOR_HEADS:
            raise ValueError(f"unknown generator head {self.head!r}; choose one of: {', '.join(GENERATOR_HEADS)}")
        if self.denoise not in DENOISE_MODES:
            raise ValueError(f"unknown denoise mode {self.denoise!r}; choose one of: {', '.join(DENOISE_MODES)}")
        if not 1 <= int(self.curve_iters) <= 16:
            raise ValueError(f"curve_iters must be 1..16, got {self.curve_iters}")

    @property
    def widths(self) -> tuple[int, int, int, int, int]:
        b = self.base_width
        return (b, 2 * b, 4 * b, 8 * b, 16 * b)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Global and local PatchGAN discriminators (``NoNormDiscriminator``)."""

    ndf: int = 64
    global_layers: int = 5
    local_layers: int = 4
    patch_size: int = 32
    num_patches: int = 6  # 1 primary + patchD_3=5 extra, as in the released code


@dataclass(frozen=True)
class LossConfig:
    """Loss weights, the self-feature-preserving loss's feature network, the optional colour, exposure, identity and highlight terms."""

    feature_net: Literal["vgg16", "efficientnet-lite0"] = "efficientnet-lite0"
    vgg_weights: str | None = None
    sfp_weight: float = 1.0
    patch_sfp: bool = True
    #: weight of the colour-preserving term (:mod:`engan.losses.color`); 0 = the paper's losses only
    color_weight: float = 0.0
    color_cell: int = 16
    #: weight of the exposure prior (:mod:`engan.losses.exposure`); 0 = off
    exposure_weight: float = 0.0
    #: mean luma the batch is pulled to; None = the normal-light set's own mean, measured at the start
    exposure_level: float | None = None
    #: weight of the exposure-order term (:func:`engan.losses.exposure.exposure_order_loss`); 0 = off
    order_weight: float = 0.0
    #: stops out per stop in, relative to the batch, that the exposure-order term asks for
    order_slope: float = 0.5
    #: weight of the identity term (:mod:`engan.losses.identity`, G(normal) = normal); 0 = off
    identity_weight: float = 0.0
    #: weight of the highlight term (:mod:`engan.losses.highlight`, bright pixels do not get brighter); 0 = off
    highlight_weight: float = 0.0


@dataclass(frozen=True)
class DataConfig:
    """Unpaired training data and augmentation."""

    low_dir: str = ""
    normal_dir: str = ""
    crop: int = 320
    darken_prob: float = 0.5  # authors' "vary" augmentation
    darken_min: float = 2.0
    darken_max: float = 4.0
    noise_prob: float = 0.0  # not in the paper: sensor noise on this share of generator inputs
    workers: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule (paper: Adam 1e-4, betas 0.5/0.999, constant then linear decay)."""

    steps: int = 1000
    batch: int = 8
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    decay_start: float = 0.5  # fraction of steps after which lr decays linearly to 0
    ema_decay: float = 0.999  # 0 disables the EMA generator
    save_every: int = 100
    sample_every: int = 100
    log_every: int = 1
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # only used on CUDA
    threads: int = 0  # torch.set_num_threads on CPU; 0 keeps torch's default
    channels_last: bool = True  # NHWC memory format for G and Ds (faster on CPU and CUDA)
    #: generator weights a new run starts from (a .safetensors generator; "" = random init, the authors');
    #: the discriminators always start fresh, and a resumed run takes everything from its own state
    pretrained: str = ""


@dataclass(frozen=True)
class ModelConfig:
    """What is needed to rebuild a generator from weights."""

    preset: str = "paper"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a training run uses; saved as ``config.json`` in the run folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        m = d.get("model", {})
        model = ModelConfig(preset=m.get("preset", "paper"),
                            generator=GeneratorConfig(**m.get("generator", {})))
        return cls(
            model=model,
            discriminator=DiscriminatorConfig(**d.get("discriminator", {})),
            loss=LossConfig(**d.get("loss", {})),
            data=DataConfig(**d.get("data", {})),
            train=TrainConfig(**d.get("train", {})),
        )


#: Generator presets. ``paper`` is the released EnlightenGAN; ``lite`` is half width
#: (2.16 M parameters, ~4x fewer FLOPs); ``tiny`` exists for fast tests.
GENERATOR_PRESETS: dict[str, GeneratorConfig] = {
    "paper": GeneratorConfig(base_width=32),
    "lite": GeneratorConfig(base_width=16),
    "tiny": GeneratorConfig(base_width=4),
}


def generator_config(preset: str) -> GeneratorConfig:
    """Return the generator config of a preset, with a clear error for unknown names."""
    try:
        return GENERATOR_PRESETS[preset]
    except KeyError:
        raise ValueError(
            f"unknown preset {preset!r}; choose one of: {', '.join(GENERATOR_PRESETS)}"
        ) from None


def model_config(preset: str) -> ModelConfig:
    return ModelConfig(preset=preset, generator=generator_config(preset))


def preset_for_width(base_width: int) -> str:
    """Name of the preset with this base width ('custom' if none)."""
    for name, cfg in GENERATOR_PRESETS.items():
        if cfg.base_width == base_width:
            return name
    return "custom"
