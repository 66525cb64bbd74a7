"""Parity check: every exported artefact against the eager PyTorch generator.

Each artefact runs on the same image at two sizes through the runtime backend its
format row names (ONNX files on ONNX Runtime's CPU provider, engines on TensorRT;
:mod:`engan.export.formats`), so the check exercises the code users run. Outputs are
compared with the eager model in ``eval()`` mode: max |Δ| and PSNR in dB on the
[0, 1] float outputs (:mod:`engan.runtime.parity`). An artefact fails when its PSNR
is below the threshold of its precision (:data:`THRESHOLDS_DB`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from engan.export.formats import THRESHOLDS_DB
from engan.runtime.parity import compare
from engan.runtime.prepost import PAD_MULTIPLE

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The two check sizes (HxW): a square and the LOL-size photo padded to 16.
DEFAULT_CHECK_SIZES: tuple[tuple[int, int], ...] = ((256, 256), (400, 608))


class ParityError(RuntimeError):
    """At least one artefact is too far from the eager model; the message names it."""


class CheckImageError(ValueError):
    """``--check-image`` could not be read as an image."""


class Runner(Protocol):
    """What the check needs of a runtime backend (:class:`engan.runtime.backends.base.Backend`)."""

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Artefact:
    """One exported file to verify.

    Attributes:
        path: the file.
        precision: ``fp32``, ``fp16`` or ``int8`` (selects the threshold).
        backend: the runtime backend that runs it (``ort`` or ``trt``, see :mod:`engan.runtime.select`).
        device: where it runs (``cpu``, ``cuda``).
        sizes: the HxW check sizes to run it at (None: every size given to :func:`check_parity`).
    """

    path: Path
    precision: str
    backend: str = "ort"
    device: str = "cpu"
    sizes: tuple[tuple[int, int], ...] | None = None

    @property
    def label(self) -> str:
        return self.path.name

    @property
    def backend_label(self) -> str:
        """The backend column of the table: ``onnxruntime-cpu`` or ``tensorrt``."""
        if self.backend == "openvino":
            return f"openvino-{self.device}"
        return "tensorrt" if self.backend == "trt" else f"onnxruntime-{self.device}"

    @property
    def threshold_db(self) -> float:
        return THRESHOLDS_DB[self.precision]


@dataclass(frozen=True)
class ParityRow:
    """Parity of one artefact at one size."""

    artefact: str
    backend: str
    size: tuple[int, int]
    max_abs: float
    psnr_db: float
    threshold_db: float

    @property
    def passed(self) -> bool:
        return self.psnr_db >= self.threshold_db


@dataclass
class ParityReport:
    """All parity rows of one export, and the image they were measured on."""

    image: str
    rows: list[ParityRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[ParityRow]:
        return [r for r in self.rows if not r.passed]

    def format_table(self) -> str:
        """A small fixed-width table: artefact, backend, size, max |Δ|, PSNR, threshold, result."""
        width = max([len("artefact")] + [len(r.artefact) for r in self.rows])
        head = f"{'artefact':<{width}}  {'backend':<15}  {'size (HxW)':>10}  {'max |Δ|':>9}  {'PSNR dB':>7}  {'min dB':>6}  result"
        lines = [f"parity vs eager PyTorch on {self.image}:", head]
        for r in self.rows:
            db = "inf" if math.isinf(r.psnr_db) else f"{r.psnr_db:.1f}"
            size = f"{r.size[0]}x{r.size[1]}"
            lines.append(
                f"{r.artefact:<{width}}  {r.backend:<15}  {size:>10}  {r.max_abs:>9.2e}  {db:>7}  "
                f"{r.threshold_db:>6.1f}  {'ok' if r.passed else 'FAIL'}"
            )
        return "\n".join(lines)

    def failure_message(self, out_dir: str | os.PathLike | None = None) -> str:
        """Why the check failed, naming every failing artefact; empty when it passed."""
        if self.passed:
            return ""
        worst: dict[str, ParityRow] = {}
        for r in self.failures:
            if r.artefact not in worst or r.psnr_db < worst[r.artefact].psnr_db:
                worst[r.artefact] = r
        parts = [
            f"{name} reaches only {r.psnr_db:.1f} dB at {r.size[0]}x{r.size[1]} (needs >= {r.threshold_db:.0f} dB, "
            f"max |Δ| {r.max_abs:.2e})"
            for name, r in worst.items()
        ]
        kept = f" The files are kept in {out_dir} for inspection." if out_dir is not None else ""
        return (
            f"parity check failed: {'; '.join(parts)}.{kept} Re-export with another --opset or --exporter, "
            "or drop the failing precision (--no-check skips this check)."
        )


# ----------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------


def validate_input(x: np.ndarray, multiple: int = PAD_MULTIPLE) -> None:
    """Raise ``ValueError`` unless ``x`` is a float32 N x 3 x H x W batch with H, W multiples of 16."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"the exported model expects an RGB batch N x 3 x H x W, got shape {tuple(x.shape)}")
    if x.dtype != np.float32:
        raise ValueError(f"the exported model expects float32 RGB in [0, 1], got dtype {x.dtype}")
    h, w = int(x.shape[2]), int(x.shape[3])
    if h % multiple or w % multiple:
        raise ValueError(
            f"input is {h}x{w} (HxW); both sides must be multiples of {multiple}. Pad first (centred reflect "
            f"padding up to {-(-h // multiple) * multiple}x{-(-w // multiple) * multiple}, then crop the output back; "
            "engan.runtime.Enhancer does this for you)."
        )


def generated_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic low-light test picture (HxWx3 float32 in [0, 1]): gradients, edges, texture, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / max(h - 1, 1), xx / max(w - 1, 1)
    light = 0.05 + 0.25 * np.exp(-((xx - 0.7) ** 2 + (yy - 0.3) ** 2) / 0.08)  # a lamp in a dark room
    hue = np.stack([0.9 + 0.1 * np.sin(6 * xx + c) for c in range(3)], -1)
    edges = ((np.floor(xx * 8) + np.floor(yy * 6)) % 2)[..., None] * 0.06  # a checker of objects
    texture = 0.03 * np.sin(xx * w / 3.0)[..., None] * np.cos(yy * h / 5.0)[..., None]
    img = light[..., None] * hue + edges + texture + rng.normal(0, 0.01, (h, w, 3))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def load_check_image(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """Read an image file, convert to RGB and resize it to ``size`` (HxW); HxWx3 float32 in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB").resize((size[1], size[0]), Image.Resampling.BICUBIC)
    except (OSError, UnidentifiedImageError) as e:
        raise CheckImageError(f"--check-image {path} could not be read as an image ({e}); pass a PNG or JPEG file") from None
    return np.asarray(rgb, dtype=np.float32) / 255.0


def make_check_inputs(
    image: str | os.PathLike | None, sizes: tuple[tuple[int, int], ...] = DEFAULT_CHECK_SIZES
) -> tuple[str, dict[tuple[int, int], np.ndarray]]:
    """Build one 1 x 3 x H x W float32 input per size from ``image`` (or a generated picture).

    Returns:
        (description of the image, {size: NCHW array}).
    """
    inputs: dict[tuple[int, int], np.ndarray] = {}
    for hw in sizes:
        hwc = load_check_image(image, hw) if image is not None else generated_image(*hw)
        inputs[hw] = np.ascontiguousarray(hwc.transpose(2, 0, 1)[None])
    shown = ", ".join(f"{h}x{w}" for h, w in sizes)
    desc = f"{Path(image).name} resized to {shown}" if image is not None else f"a generated low-light image at {shown}"
    return desc, inputs


# ----------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------


def runtime_runner(path: str | os.PathLike, backend: str = "ort", device: str = "cpu") -> Runner:
    """The :mod:`engan.runtime` backend that runs ``path``: export builds its runners only here.

    Args:
        path: an exported artefact.
        backend: ``ort``, ``trt`` or ``openvino`` (a row of :data:`engan.runtime.select.BACKENDS`).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
    """
    from engan.runtime.backends.base import BackendOptions
    from engan.runtime.select import BACKENDS, canonical_backend

    return BACKENDS[canonical_backend(backend)].create(Path(path), BackendOptions(device=device))


def _runner_for(artefact: Artefact) -> Runner:
    return runtime_runner(artefact.path, artefact.backend, artefact.device)


def reference_outputs(
    model: "torch.nn.Module", inputs: dict[tuple[int, int], np.ndarray]
) -> dict[tuple[int, int], np.ndarray]:
    """Eager PyTorch outputs (``eval()`` mode, no grad) for every check input."""
    import torch

    model = model.eval()
    out: dict[tuple[int, int], np.ndarray] = {}
    with torch.no_grad():
        for hw, x in inputs.items():
            out[hw] = model(torch.from_numpy(x)).numpy()
    return out


def check_parity(
    model: "torch.nn.Module",
    artefacts: list[Artefact],
    inputs: dict[tuple[int, int], np.ndarray],
    image: str = "a generated image",
    runner_factory: Callable[[Artefact], Runner] = _runner_for,
    log: Callable[[str], None] | None = None,
) -> ParityReport:
    """Compare every artefact with the eager model at every input size.

    Args:
        model: the eager generator.
        artefacts: files to verify.
        inputs: {HxW: 1 x 3 x H x W float32} from :func:`make_check_inputs`.
        image: description printed above the table.
        runner_factory: builds a runner per artefact (default: :func:`runtime_runner`).
        log: optional per-artefact progress callback.

    Returns:
        The report (never raises on a failed threshold; callers decide).

    Raises:
        ValueError: an input breaks the engan contract (see :func:`validate_input`).
    """
    for x in inputs.values():
        validate_input(x)
    refs = reference_outputs(model, inputs)
    report = ParityReport(image=image)
    for art in artefacts:
        if log is not None:
            log(f"  checking {art.label} ({art.backend_label})")
        runner = runner_factory(art)
        try:
            for hw, x in inputs.items():
                if art.sizes is not None and hw not in art.sizes:
                    continue
                stats = compare(refs[hw], runner.run(x))
                report.rows.append(ParityRow(art.label, art.backend_label, hw, stats.max_abs, stats.psnr_db,
                                             art.threshold_db))
        finally:
            runner.close()
    return report
