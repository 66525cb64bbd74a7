"""engan: EnlightenGAN low-light enhancement, trained unpaired, shipped fast.

Importing ``engan`` does not import torch: the runtime (``engan.runtime``) works on
a box with only onnxruntime (or TensorRT), numpy and Pillow.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
