"""Eager PyTorch backend for ``.safetensors`` generators and run folders (only when asked).

This is the reference the exported graphs are compared against. It imports torch
and :mod:`engan.models` lazily, inside :class:`TorchBackend`, so the rest of the
runtime stays torch-free. Needs the ``train`` extra.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from engan.runtime._optional import BackendUnavailable, require
from engan.runtime.backends.base import (
    BackendError, BackendInfo, BackendOptions, BaseBackend, ModelLoadError, model_label,
)
from engan.runtime.backends.ort import parse_device
from engan.runtime.meta import ArtefactMeta, file_sha256


class TorchBackend(BaseBackend):
    """Run an engan generator checkpoint with eager PyTorch.

    Args:
        path: a generator ``.safetensors`` file or a run folder (``RUN_DIR/generator.safetensors``).
        options: :class:`BackendOptions` (or its fields as keywords); this backend reads
            ``device`` (``auto``: CUDA when torch sees one, ``cpu``, ``cuda`` or ``cuda:N``),
            ``precision`` (``fp32``, the default, or ``fp16``: CUDA only, on a CPU it is
            ~100x slower and refused) and ``threads`` (``torch.set_num_threads``, process-wide).
    """

    name = "torch"

    def __init__(self, path: str | os.PathLike, options: BackendOptions | None = None, **overrides: Any) -> None:
        super().__init__()
        opts = BackendOptions.of(options, **overrides)
        device, precision, threads = opts.device, opts.precision or "fp32", opts.threads
        torch = require("torch", "the PyTorch backend (.safetensors checkpoints)")
        require("safetensors", "the PyTorch backend (.safetensors checkpoints)")
        from engan.models.checkpoint import CheckpointError, load_generator, read_metadata, resolve_checkpoint

        self._torch = torch
        self.path = Path(path)
        kind, index = parse_device(device)
        if kind == "auto":
            kind = "cuda" if torch.cuda.is_available() else "cpu"
        if kind == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(
                f"device={device!r} asked for CUDA but this torch build sees no CUDA GPU (torch {torch.__version__}); "
                "use device='cpu' or install a CUDA build of torch"
            )
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        if precision == "fp16" and kind != "cuda":
            raise BackendError("fp16 eager PyTorch runs only on CUDA (on a CPU it is ~100x slower); use precision='fp32'")
        if threads:
            torch.set_num_threads(int(threads))
        try:
            weights = resolve_checkpoint(self.path)
            file_meta = read_metadata(weights)
            model = load_generator(weights)
        except CheckpointError as e:
            raise ModelLoadError(str(e)) from None
        self._device = torch.device("cuda", index) if kind == "cuda" else torch.device("cpu")
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self._model = model.to(self._device, self._dtype).eval()
        self.meta = ArtefactMeta(
            version=file_meta.get("engan.version", ""),
            model_name=model_label(self.path),
            preset=file_meta.get("engan.preset", ""),
            params=sum(int(p.numel()) for p in model.parameters()),
            checkpoint_sha256=file_sha256(weights),
            precision=precision,
        )
        self.info = BackendInfo(
            name=self.name,
            device=f"cuda:{index}" if kind == "cuda" else "cpu",
            precision=precision,
            versions={"torch": torch.__version__},
            model_path=str(weights),
            threads=torch.get_num_threads() if kind == "cpu" else None,
        )

    def _run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self._device, self._dtype)
            y = self._model(t)
            return y.float().cpu().numpy()

    def _close(self) -> None:
        self._model = None
