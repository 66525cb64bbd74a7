"""The artefacts one preset is benchmarked with: weights, FP32 ONNX, INT8 ONNX, FLOP count.

Weights, in order of preference: ``--bench-weights`` (when its preset is the one
benchmarked), the shipped model (``engan.runtime.shipped``) when its preset matches,
else a seeded random generator of the preset. The report says which was used: INT8
parity depends on the weights (a random generator's residual branch is almost zero,
so its INT8 parity is optimistic).

The ONNX files are written by the real exporter (:func:`engan.export.onnx.export_onnx`)
and quantizer (:func:`engan.export.quantize.quantize_int8`), so the benchmark measures
what users run.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

#: FLOPs are counted at this size and scaled by pixel count (every conv is 'same'-padded
#: and the four poolings divide H and W exactly, so conv FLOPs are linear in H*W).
_COUNT_HW = (64, 64)


@dataclass
class BenchModel:
    """Files and numbers of one benchmarked preset.

    Attributes:
        preset: ``tiny``, ``lite``, ``paper`` (or ``custom``).
        weights: generator ``.safetensors`` used by the torch backends.
        weights_source: where the weights came from (shown in the report).
        onnx_fp32: FP32 ONNX from the exporter.
        onnx_int8: INT8 ONNX from the quantizer (None when it failed; see ``int8_error``).
        int8_error: why there is no INT8 model.
        flops_per_pixel: FLOPs (2 x MACs, convolutions) per input pixel.
        params: parameter count.
        prepare_s: seconds spent exporting and quantizing.
    """

    preset: str
    weights: Path
    weights_source: str
    onnx_fp32: Path
    onnx_int8: Path | None
    int8_error: str | None
    flops_per_pixel: float
    params: int
    prepare_s: float = 0.0

    def gflop(self, h: int, w: int, batch: int = 1) -> float:
        """GFLOP of one call on a ``batch x 3 x h x w`` input."""
        return self.flops_per_pixel * h * w * batch / 1e9

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in d.items()})

    @classmethod
    def from_json(cls, text: str) -> "BenchModel":
        d = json.loads(text)
        for k in ("weights", "onnx_fp32"):
            d[k] = Path(d[k])
        d["onnx_int8"] = Path(d["onnx_int8"]) if d["onnx_int8"] else None
        return cls(**d)


def count_flops_per_pixel(model) -> float:
    """Convolution FLOPs per input pixel of a generator (``torch.utils.flop_counter``)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    h, w = _COUNT_HW
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, h, w))
    return counter.get_total_flops() / (h * w)


def _shipped_weights(preset: str) -> tuple[Path, str] | None:
    try:
        from engan.models.checkpoint import read_metadata
        from engan.runtime.shipped import default_model_path

        path = default_model_path("safetensors")
    except (FileNotFoundError, ImportError):
        return None
    if read_metadata(path).get("engan.preset") != preset:
        return None
    return path, f"shipped model {path.name}"


def weights_preset(path: str | Path) -> str:
    """The preset recorded in a generator checkpoint (file or run folder)."""
    from engan.models.checkpoint import read_metadata, resolve_checkpoint

    return read_metadata(resolve_checkpoint(path)).get("engan.preset", "custom")


def resolve_weights(preset: str, workdir: Path, weights: str | None = None, seed: int = 0) -> tuple[Path, str]:
    """The weights file for ``preset`` and a description of where it came from (see module docstring)."""
    from engan.models.checkpoint import resolve_checkpoint

    if weights is not None and weights_preset(weights) == preset:
        path = resolve_checkpoint(weights)
        return path, f"--bench-weights {path}"
    shipped = _shipped_weights(preset)
    if shipped is not None:
        return shipped
    import torch

    from engan.models import create_generator
    from engan.models.checkpoint import save_generator

    torch.manual_seed(seed)
    path = workdir / f"{preset}-random-seed{seed}.safetensors"
    save_generator(path, create_generator(preset).eval())
    return path, f"seeded random {preset} generator (torch.manual_seed({seed}); no trained weights)"


def prepare_model(preset: str, workdir: Path, weights: str | None, calib_images: int) -> BenchModel:
    """Export and quantize one preset into ``workdir`` (see the module docstring)."""
    from engan import __version__
    from engan.export.onnx import export_onnx
    from engan.export.quantize import quantize_int8
    from engan.models.checkpoint import load_generator
    from engan.runtime.meta import ArtefactMeta, file_sha256

    t0 = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    path, source = resolve_weights(preset, workdir, weights)
    model = load_generator(path)
    params = sum(p.numel() for p in model.parameters())
    meta = ArtefactMeta(version=__version__, model_name=f"bench-{preset}", preset=preset, params=params,
                        checkpoint_sha256=file_sha256(path), precision="fp32")
    fp32 = export_onnx(model, workdir / f"{preset}.onnx", meta)
    int8: Path | None = workdir / f"{preset}.int8.onnx"
    error = None
    try:
        quantize_int8(fp32, int8, num_images=calib_images, progress=False)
    except Exception as e:  # noqa: BLE001 - reported as the INT8 rows' skip reason
        int8, error = None, f"INT8 quantization failed: {type(e).__name__}: {e}"
    return BenchModel(preset=preset, weights=path, weights_source=source, onnx_fp32=fp32, onnx_int8=int8,
                      int8_error=error, flops_per_pixel=count_flops_per_pixel(model), params=params,
                      prepare_s=round(time.perf_counter() - t0, 1))
