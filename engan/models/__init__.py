"""EnlightenGAN networks: generator, discriminators and model construction."""
from __future__ import annotations

from engan.config import GeneratorConfig, generator_config
from engan.models.discriminator import PatchDiscriminator
from engan.models.generator import UNetGenerator, attention_map, check_input, count_parameters
from engan.models.padding import crop_padding, enhance_tensor, pad_amounts, pad_to_multiple


def create_generator(preset: str | GeneratorConfig = "paper") -> UNetGenerator:
    """Build a generator from a preset name (``paper``, ``lite``, ``tiny``) or a config."""
    cfg = generator_config(preset) if isinstance(preset, str) else preset
    return UNetGenerator(cfg)


__all__ = [
    "UNetGenerator", "PatchDiscriminator", "create_generator", "attention_map", "check_input",
    "count_parameters", "pad_to_multiple", "crop_padding", "pad_amounts", "enhance_tensor",
]
