"""Generator weights on disk: safetensors only (no pickle from user paths).

A generator file is a safetensors file whose metadata records how to rebuild the
module (``engan.preset`` and one ``engan.<field>`` per GeneratorConfig field: ``base_width``,
``align_corners``, ``head``, ``curve_iters``, ``knee``), the engan
version, and optional extras (training step, EMA or raw weights).

A run folder (``engan train --out RUN_DIR``) holds ``generator.safetensors``; every
function here accepts either that file or the folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from engan.config import GeneratorConfig, preset_for_width
from engan.runtime.atomic import atomic_write_bytes  # noqa: F401  (re-exported)
from engan.runtime.meta import file_sha256  # noqa: F401  (re-exported: the one sha256, in the runtime)

GENERATOR_FILE = "generator.safetensors"
#: run-folder subfolder of the per-save generator snapshots
SNAPSHOT_DIR = "snapshots"


def snapshot_name(step: int, raw: bool = False) -> str:
    """File name of a run's snapshot at ``step``: ``generator_step{N:06d}`` (EMA, or raw when EMA is off) or
    ``generator_raw_step{N:06d}``, ``.safetensors``."""
    return f"generator{'_raw' if raw else ''}_step{step:06d}.safetensors"


_SNAPSHOT_NAME = re.compile(r"^generator_step(\d+)\.safetensors$")


def snapshot_step(name: str) -> int | None:
    """The step of a :func:`snapshot_name` (``raw=False``) file name; None for any other name."""
    m = _SNAPSHOT_NAME.match(name)
    return int(m.group(1)) if m else None


class CheckpointError(RuntimeError):
    """A weights file is missing, corrupt or of another model; the message says what to do."""


def resolve_checkpoint(path: str | os.PathLike | None) -> Path:
    """Map a run folder, a weights file or a shipped model name (None: the shipped default) to the generator
    safetensors file (:func:`engan.runtime.resolve.resolve_model_source`, then a run folder's generator).

    Raises:
        CheckpointError: nothing usable at ``path`` (the message says what to pass).
        engan.runtime.shipped.ModelNotShippedError: ``path`` is None and no model ships (the caller says what to pass).
    """
    from engan.runtime.resolve import resolve_model_source

    try:
        p = resolve_model_source(path, "safetensors")
    except FileNotFoundError as e:  # ModelNotShippedError too
        if path is None:
            raise
        raise CheckpointError(str(e)) from None
    if p.is_dir():
        f = p / GENERATOR_FILE
        if not f.is_file():
            raise CheckpointError(
                f"{p} is a folder without {GENERATOR_FILE}; pass a run folder written by "
                "`engan train` or a .safetensors generator file"
            )
        return f
    return p


def _own_metadata(cfg: GeneratorConfig) -> dict[str, str]:
    """The ``engan.*`` keys :func:`save_generator` writes itself (extras come on top)."""
    from engan import __version__

    return {
        "engan.version": __version__,
        "engan.kind": "generator",
        "engan.preset": preset_for_width(cfg.base_width),
        # every GeneratorConfig field, so the file rebuilds its generator (read back by generator_config_from_metadata)
        **{f"engan.{f.name}": str(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)},
    }


def save_generator(
    path: str | os.PathLike,
    model: torch.nn.Module,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a generator's state dict as safetensors, atomically, with rebuild metadata."""
    from safetensors.torch import save

    meta = {"format": "pt", **_own_metadata(model.config)}  # type: ignore[arg-type]
    for k, v in (extra or {}).items():
        meta[f"engan.{k}"] = v if isinstance(v, str) else json.dumps(v)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = save(state, metadata=meta)
    atomic_write_bytes(path, data)
    return Path(path)


def freeze_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Put every BatchNorm of ``model`` in eval mode (running statistics, not updated); returns ``model``.

    Call after ``model.train()``, which would switch them back.
    """
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


#: GeneratorConfig fields that act at inference only (eval mode): changing them changes no weight
INFERENCE_OPTIONS = ("knee", "denoise")


def set_inference_options(model: torch.nn.Module, **options: Any) -> torch.nn.Module:
    """Replace ``model.config``'s inference-only fields (:data:`INFERENCE_OPTIONS`); ``None`` keeps a field."""
    unknown = set(options) - set(INFERENCE_OPTIONS)
    if unknown:
        raise ValueError(f"not inference options: {', '.join(sorted(unknown))} (they are: {', '.join(INFERENCE_OPTIONS)})")
    given = {k: v for k, v in options.items() if v is not None}
    model.config = dataclasses.replace(model.config, **given)  # type: ignore[assignment]
    return model


def save_with_inference_options(src: str | os.PathLike, out: str | os.PathLike, **options: Any) -> Path:
    """Copy the generator ``src`` to ``out`` with other inference options; weights and other metadata unchanged."""
    model = set_inference_options(load_generator(src), **options)
    own = _own_metadata(model.config)  # type: ignore[arg-type]
    extra = {k[len("engan."):]: v for k, v in read_metadata(src).items() if k.startswith("engan.") and k not in own}
    return save_generator(out, model, extra=extra)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Read the safetensors header metadata without loading tensors."""
    p = resolve_checkpoint(path)
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("file shorter than a safetensors header")
            n = int.from_bytes(head, "little")
            if n <= 0 or n > 100 * 1024 * 1024 or n > p.stat().st_size - 8:
                raise ValueError(f"header length {n} does not fit the file size {p.stat().st_size}")
            try:
                header = json.loads(f.read(n))
            except RecursionError:  # "[[[[..." nested past Python's stack: no header of tensors is like that
                raise ValueError("its header is JSON nested too deeply to be one of tensors and metadata") from None
            if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}) or {}, dict):
                raise ValueError("its header is not a JSON object of tensors and metadata")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{p} is not a valid safetensors file ({e}); re-export it or point to another checkpoint"
        ) from None
    return {str(k): str(v) for k, v in (header.get("__metadata__", {}) or {}).items()}


def generator_config_from_metadata(meta: dict[str, str]) -> GeneratorConfig:
    """The GeneratorConfig that :func:`save_generator` wrote as ``engan.<field>`` metadata.

    A field the file does not name keeps its default (older files have no head, curve_iters or knee:
    the authors' residual head, clamped output). Values are parsed by the type of the field's default.
    """
    kwargs: dict[str, Any] = {}
    try:
        for f in dataclasses.fields(GeneratorConfig):
            text = meta.get(f"engan.{f.name}")
            if text is not None:
                kind = type(f.default)
                kwargs[f.name] = text == "True" if kind is bool else kind(text)
        return GeneratorConfig(**kwargs)
    except ValueError as e:
        raise CheckpointError(f"the checkpoint's metadata names a generator this engan cannot build ({e}); "
                              "upgrade engan or point to another checkpoint") from None


def load_generator(
    path: str | os.PathLike,
    preset: str | None = None,
    map_location: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Load a generator from a safetensors file or run folder, in ``eval()`` mode.

    Args:
        path: ``generator.safetensors`` (or any engan generator file) or a run folder.
        preset: if given, the file must hold this preset, else a clear error is raised.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from engan.models import UNetGenerator

    p = resolve_checkpoint(path)
    meta = read_metadata(p)
    cfg = generator_config_from_metadata(meta)
    file_preset = meta.get("engan.preset", preset_for_width(cfg.base_width))
    if preset is not None and preset != file_preset:
        raise CheckpointError(
            f"{p} holds a '{file_preset}' generator, not '{preset}'; pass --preset {file_preset} "
            "or another checkpoint"
        )
    try:
        state = load_file(str(p), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{p} could not be read as safetensors ({e}); the file is corrupt or truncated") from None
    model = UNetGenerator(cfg)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other shapes: metadata of one preset, tensors of another
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e))
        raise CheckpointError(
            f"{p} does not match the '{file_preset}' generator its metadata names ({detail}); the file holds "
            "another model or was edited: re-save it with engan or point to another checkpoint"
        ) from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(
            f"{p} does not match the '{file_preset}' generator: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}); "
            "pass a generator saved by engan (RUN_DIR/generator.safetensors or a snapshot)"
        )
    model.eval()
    return model


def load_plain_tensors(path: str | os.PathLike, what: str, fix: str,
                       error: type[Exception] = CheckpointError) -> dict:
    """Read a PyTorch ``.pth``/``.pt`` state dict with ``torch.load(weights_only=True)``.

    A file that holds anything but tensors (a pickle that would run code), a torn file or
    one that is not a dict is refused with a one-line reason that names the file; code in
    it is never run. The message never repeats torch's own advice to set
    ``weights_only=False``.

    Args:
        path: the file.
        what: what the file should hold, for the message ("VGG16 weights").
        fix: what the user should do instead, for the message.
        error: exception class to raise.
    """
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code/objects, RuntimeError/EOFError for torn files
        raise error(
            f"{path} was refused as {what}: it is not a plain tensor file (objects or code in the pickle, "
            f"or a corrupt file: {type(e).__name__}; engan reads .pth files with "
            f"torch.load(weights_only=True) and never runs code stored in them); {fix}"
        ) from None
    if not isinstance(state, dict):
        raise error(f"{path} was refused as {what}: it holds a {type(state).__name__}, not a state dict; {fix}")
    return state


def load_legacy_checkpoint(path: str | os.PathLike) -> torch.nn.Module:
    """Load the authors' released ``200_net_G_A.pth`` (torch.save of a DataParallel state dict).

    Uses ``torch.load(weights_only=True)``: tensors only, no arbitrary pickle code.

    Raises:
        CheckpointError: the file is missing, is not a plain tensor file (e.g. a pickle that
            would run code: it is refused, never executed) or holds another network.
    """
    from engan.models import UNetGenerator

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}; pass the authors' 200_net_G_A.pth")
    state = load_plain_tensors(p, "an EnlightenGAN G_A checkpoint",
                               "pass the authors' 200_net_G_A.pth or a .safetensors generator")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = UNetGenerator(GeneratorConfig(base_width=32, align_corners=True))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise CheckpointError(f"{p} is not an EnlightenGAN G_A checkpoint ({str(e).splitlines()[-1].strip()})") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(f"{path} is not an EnlightenGAN G_A checkpoint: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()
