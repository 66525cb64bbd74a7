"""Typed configuration for engan: one place for every knob.

Presets are frozen dataclasses; derive variants with :func:`dataclasses.replace`.
Every config is saved as JSON next to each checkpoint and embedded in exported
artefacts, so a model can always be rebuilt from its files.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from engan.runtime.prepost import PAD_MULTIPLE  # noqa: F401  (four 2x poolings; one definition, in the runtime)

#: Output heads of the generator (see :class:`GeneratorConfig`).
GENERATOR_HEADS = ("residual", "curve", "curve-residual")
#: Inference-time noise removal of the generator (see :class:`GeneratorConfig`).
DENOISE_MODES = ("off", "chroma", "full")
#: Learned refinement stages after the head (see :class:`GeneratorConfig`).
REFINE_MODES = ("off", "gain")


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
        refine: learned stage after the head (not in the paper). ``off``: none. ``gain``:
            a small network at half resolution that removes what the enhancement amplified
            (noise, JPEG blocks), told the local gain (:class:`engan.models.generator.GainRefiner`);
            trained by the ``consistency`` loss term; in every exported graph.
        refine_width: channels of the refine stage's hidden layers.
    """

    base_width: int = 32
    align_corners: bool = True
    head: str = "residual"
    curve_iters: int = 8
    knee: float = 1.0
    denoise: str = "off"
    refine: str = "off"
    refine_width: int = 32

    def __post_init__(self) -> None:
        if not 8 <= int(self.refine_width) <= 256:
            raise ValueError(f"refine_width must be 8..256, got {self.refine_width}")
        if self.refine not in REFINE_MODES:
            raise ValueError(f"unknown refine mode {self.refine!r}; choose one of: {', '.join(REFINE_MODES)}")
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
    """Weight and options of each generator loss term (:mod:`engan.losses.registry`).

    ``terms`` maps a term's name to ``{"weight": w, <option>: value, ...}``; a term or
    option not named keeps its registered default. A run's ``config.json`` holds every
    registered term with its resolved weight and options.
    """

    terms: dict[str, dict[str, Any]] = field(default_factory=dict)

    def weight(self, name: str) -> float:
        """The weight given to ``name`` here (0 when not named: the caller resolves registry defaults)."""
        return float(self.terms.get(name, {}).get("weight", 0.0))

    def option(self, name: str, option: str, default: Any = None) -> Any:
        return self.terms.get(name, {}).get(option, default)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LossConfig":
        """Read ``{"terms": {...}}``, or the flat fields of configs written before the registry."""
        if "terms" in d:
            return cls(terms={k: dict(v) for k, v in d["terms"].items()})
        return cls(terms=_legacy_loss_terms(d))


#: flat LossConfig field (before the registry) -> (term, option)
_LEGACY_LOSS_FIELDS = {
    "feature_net": ("sfp", "feature_net"), "vgg_weights": ("sfp", "vgg_weights"), "sfp_weight": ("sfp", "weight"),
    "patch_sfp": ("sfp", "patch"), "color_weight": ("color", "weight"), "color_cell": ("color", "cell"),
    "exposure_weight": ("exposure", "weight"), "exposure_level": ("exposure", "level"),
    "order_weight": ("order", "weight"), "order_slope": ("order", "slope"),
    "identity_weight": ("identity", "weight"), "highlight_weight": ("highlight", "weight"),
}


def _legacy_loss_terms(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    unknown = set(d) - set(_LEGACY_LOSS_FIELDS)
    if unknown:
        raise ValueError(f"unknown loss setting(s) {', '.join(sorted(unknown))} in the config")
    terms: dict[str, dict[str, Any]] = {"adversarial": {"weight": 1.0}, "sfp": {"weight": 1.0}}
    for key, value in d.items():
        term, option = _LEGACY_LOSS_FIELDS[key]
        terms.setdefault(term, {})[option] = "" if (key == "vgg_weights" and value is None) else value
    return terms


@dataclass(frozen=True)
class DegradeConfig:
    """Ranges of the degraded twin (:func:`engan.data.degrade.degrade`), each drawn per crop.

    The twin exists only when a loss term needs it (the ``consistency`` term).

    Attributes:
        stops: exposure shortfall in stops of linear light, uniform in [lo, hi].
        shot: shot-noise variance per unit of linear signal, log-uniform in [lo, hi].
        read: read-noise standard deviation in linear light, log-uniform in [lo, hi].
        chroma_blur: largest Gaussian sigma (px) of the noise's low-frequency share.
        jpeg_prob: share of twins that are JPEG-compressed (4:2:0).
        jpeg_quality: JPEG quality, uniform integer in [lo, hi].
    """

    stops: tuple[float, float] = (0.0, 2.0)
    shot: tuple[float, float] = (2e-5, 1e-3)
    read: tuple[float, float] = (1e-4, 1e-3)
    chroma_blur: float = 1.5
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 95)

    def __post_init__(self) -> None:
        for name in ("stops", "shot", "read", "jpeg_quality"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # JSON gives lists
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"degrade.{name} range [{lo}, {hi}] has lo > hi")
        if self.stops[0] < 0:
            raise ValueError(f"degrade.stops {self.stops} must be >= 0 (a shortfall of exposure)")
        if self.shot[0] <= 0 or self.read[0] <= 0:
            raise ValueError("degrade.shot and degrade.read ranges must be > 0 (they are drawn log-uniformly)")
        if not 0.0 <= self.jpeg_prob <= 1.0:
            raise ValueError(f"degrade.jpeg_prob {self.jpeg_prob} is outside [0, 1]")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"degrade.jpeg_quality {self.jpeg_quality} must lie in [1, 100]")


@dataclass(frozen=True)
class DataConfig:
    """Unpaired training data and augmentation."""

    low_dir: str = ""
    normal_dir: str = ""
    crop: int = 320
    darken_prob: float = 0.5  # authors' "vary" augmentation
    darken_min: float = 2.0
    darken_max: float = 4.0
    #: round the generator input to 8 bits after darkening, as real dark photos are (not in the paper)
    quantize: bool = False
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    workers: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataConfig":
        d = dict(d)
        if float(d.pop("noise_prob", 0.0) or 0.0) > 0:  # configs written before the degraded twin
            warnings.warn("data.noise_prob is no longer supported (its runs learned to darken; the consistency "
                          "loss term and data.degrade replace it): ignored", stacklevel=2)
        return cls(**{**d, "degrade": DegradeConfig(**d.get("degrade", {}))})


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
    #: keep the generator's BatchNorm on its running statistics (a fine-tune of a trained generator: training
    #: then computes exactly what inference does, whatever else shares the batch)
    freeze_bn: bool = False
    #: train only the generator parameters whose names start with this ("refiner." for the refine stage);
    #: "" trains them all. The others keep their (pretrained) values.
    trainable: str = ""
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
            loss=LossConfig.from_dict(d.get("loss", {})),
            data=DataConfig.from_dict(d.get("data", {})),
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
