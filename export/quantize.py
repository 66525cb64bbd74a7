"""INT8 static quantization of an engan ONNX generator (ONNX Runtime, QDQ format).

``engan export --int8 [--calib DIR]`` calls :func:`quantize_int8`. The recipe and why
(measured on the 2-core AMD EPYC box this project is developed on, ONNX Runtime
1.32; the numbers are in the benchmark report):

1. ``quant_pre_process`` (ONNX shape inference + ORT basic optimisations: constant
   folding of the exporter's ``Identity`` aliases). Symbolic shape inference is
   skipped: it cannot resolve the dynamic ``Resize`` shapes of the decoder.
2. Every ``BatchNormalization`` becomes an exact 1x1 depthwise ``Conv``
   (``y = a*x + b`` per channel). The generator's BatchNorm follows its LeakyReLU,
   so ORT cannot fold it into a convolution; left alone it stays float and forces a
   Dequantize/Quantize pair (plus NHWC transposes) around every layer. As a
   depthwise conv it runs as ``QLinearConv`` and the whole encoder/decoder stays in
   int8 (fewer than ten Q/DQ nodes remain after ORT's fusions).
3. Per-channel activation ranges are equalized (:func:`equalize_channels`): each
   Conv's output channels are rescaled and the consuming Convs compensate, exactly.
   BatchNorm after LeakyReLU leaves channel ranges 100x apart, which per-tensor
   uint8 activations cannot represent; equalizing (alpha 0.5) raised the PSNR of a
   trained-like ``lite`` model against FP32 from 29.0 to 33.2 dB on LOL photos.
4. Calibration on real low-light photos (``../shared/data/train/low`` when present),
   centre-cropped to a fixed multiple-of-16 size; percentile ranges (99.999 %),
   which clip rare outliers (+0.6 dB mean, +1.9 dB on the worst photo vs MinMax).
5. ``quantize_static``: QDQ, per-channel symmetric int8 weights with ``reduce_range``
   (7-bit weights), uint8 activations (MLAS u8s8 kernels). On CPUs with AVX2 but no
   VNNI (this box) MLAS multiplies u8 x s8 pairs with ``vpmaddubsw``, whose int16 sums
   saturate with full 8-bit weights: 7-bit weights avoid it, and that alone decides
   whether the full-resolution layers can be quantized (quantizing them without it:
   32.1 dB mean / 21.6 dB worst photo; with it: 39.2 / 30.9). The prologue, the first
   conv (it sees the raw image), the 1x1 head and the tail stay in float
   (:data:`DEFAULT_EXCLUDE`). Measured on the shipped ``engan-lite`` model, 15 LOL
   photos at 400x608, PSNR vs FP32 (pooled over the photos / mean / worst photo) and
   single-thread CPU-time speedup over ORT FP32:

   ==========================================  =====================  =======
   float layers (all with reduce_range)         PSNR pooled/mean/worst  speedup
   ==========================================  =====================  =======
   prologue, first_conv, decoder_out, head,     38.1 / 39.5 / 31.0 dB  1.50x
   tail (the previous default)
   **prologue, first_conv, head, tail**         37.9 / 39.2 / 30.9 dB  1.99x
   prologue, head, tail                         36.5 / 37.2 / 32.1 dB  1.79x
   prologue, tail                               36.2 / 36.9 / 31.9 dB  1.54x
   prologue, head, tail, equalize alpha 0.75    35.2 / 36.5 / 31.5 dB  1.93x
   prologue, head, tail, MinMax calibration     36.2 / 37.1 / 29.5 dB  1.74x
   ==========================================  =====================  =======

   Without reduce_range (full 8-bit weights) the old default read 39.2 dB mean at
   1.55x, 8-bit *unsigned* weights (u8u8 kernels) 37.0 dB at 0.91x (slower than FP32).
6. The engan ``metadata_props`` of the FP32 model are copied with ``precision=int8``
   and the file is written atomically.

Exclusions are given as node names or as *roles* that are found from the graph's
structure, so they work for either exporter's node naming:

``prologue``  the ops before the first convolution (luma/attention map, [-1, 1] scaling)
``first_conv`` the first convolution (sees the raw image)
``decoder_out`` the full-resolution decoder after the last skip concatenation, up to the head
              (``conv9_1``/``conv9_2`` with their activations and BatchNorm)
``head``      the last full (ungrouped) convolution: the 1x1 ``conv10`` that produces the residual or
              curve strengths (the fixed depthwise convolutions of the ``denoise`` filter come after it)
``tail``      everything after the head (residual x attention, skip add, clamp, shoulder, denoise filter)
``attention`` the multiplications of two feature maps (features x attention map)
``concat``    the skip-connection concatenations
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from engan.runtime.atomic import atomic_write_bytes
from engan.runtime.meta import PREFIX, ArtefactMeta

if TYPE_CHECKING:  # pragma: no cover
    import onnx

#: Image suffixes read from a calibration folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Structural roles accepted in ``exclude`` (see the module docstring).
ROLES = ("prologue", "first_conv", "decoder_out", "head", "tail", "attention", "concat")


@dataclass(frozen=True)
class Int8Config:
    """How :func:`quantize_int8` quantizes (defaults are the measured best recipe).

    Attributes:
        calib_size: (H, W) of the calibration crops; multiples of 16.
        activation_type: ``uint8`` or ``int8`` activations.
        weight_type: ``int8`` or ``uint8`` weights.
        reduce_range: 7-bit weights (avoids the int16 saturation of AVX2 u8s8 kernels on CPUs
            without VNNI; costs nothing measurable on this model, so it is on everywhere).
        per_channel: per-output-channel weight scales.
        bn_as_conv: rewrite BatchNorm as an exact depthwise 1x1 Conv so it runs in int8.
        equalize: equalize per-channel activation ranges (exact rescaling, see :func:`equalize_channels`).
        equalize_alpha: strength of the equalization (0: none, 1: every channel to the same range).
        calibrate_method: ``minmax``, ``entropy`` or ``percentile``.
        exclude: default roles/node names kept in float.
    """

    calib_size: tuple[int, int] = (256, 384)
    activation_type: str = "uint8"
    weight_type: str = "int8"
    reduce_range: bool = True
    per_channel: bool = True
    bn_as_conv: bool = True
    equalize: bool = True
    equalize_alpha: float = 0.5
    calibrate_method: str = "percentile"
    exclude: tuple[str, ...] = ("prologue", "first_conv", "head", "tail")


#: The defaults used by ``engan export --int8``.
DEFAULT_CONFIG = Int8Config()
DEFAULT_EXCLUDE: tuple[str, ...] = DEFAULT_CONFIG.exclude


class QuantizeError(RuntimeError):
    """INT8 quantization cannot proceed; the message names the file or option and the fix."""


# --------------------------------------------------------------------------- calibration data
def default_calib_dir() -> Path | None:
    """``$ENGAN_SHARED/data/train/low`` or ``<repo>/../shared/data/train/low`` when present, else None."""
    repo = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get("ENGAN_SHARED", repo.parent / "shared"))
    folder = shared / "data" / "train" / "low"
    return folder if folder.is_dir() else None


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (sorted by name)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def pick_evenly(items: Sequence[Path], count: int) -> list[Path]:
    """``count`` items spread evenly over ``items`` (all of them when there are fewer)."""
    if count >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in idx]


def center_fit(img: "object", size: tuple[int, int]) -> np.ndarray:
    """Resize a PIL image so it covers ``size`` (H, W), centre-crop it; float32 HxWx3 in [0, 1]."""
    from PIL import Image

    h, w = size
    img = img.convert("RGB")
    scale = max(h / img.height, w / img.width)
    rw, rh = max(w, round(img.width * scale)), max(h, round(img.height * scale))
    img = img.resize((rw, rh), Image.BILINEAR)
    left, top = (rw - w) // 2, (rh - h) // 2
    img = img.crop((left, top, left + w, top + h))
    return np.asarray(img, dtype=np.float32) / 255.0


def generated_dark_image(h: int, w: int, seed: int) -> np.ndarray:
    """A deterministic low-light-like image (smooth colour patterns, noise), float32 HxWx3 in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fy, fx = rng.uniform(3, 40, size=2)
    base = np.stack([np.sin(xx / fx + c + seed) * np.cos(yy / fy - c) for c in range(3)], -1)
    level = rng.uniform(0.05, 0.35)
    img = (base * 0.5 + 0.5) * level + rng.random((h, w, 3), dtype=np.float32) * 0.03
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def load_calibration_batches(
    calib_dir: Path | None,
    num_images: int,
    size: tuple[int, int],
    progress: bool = False,
) -> tuple[list[np.ndarray], str]:
    """Calibration inputs as float32 1x3xHxW arrays in [0, 1], and where they came from.

    Args:
        calib_dir: folder of low-light images; None uses :func:`default_calib_dir`, and
            generated dark images when that is absent too.
        num_images: how many images (spread evenly over the sorted folder).
        size: (H, W) crop size, multiples of 16.
        progress: show a tqdm bar while decoding.

    Raises:
        QuantizeError: the folder is missing, empty or holds an unreadable image.
    """
    if num_images < 1:
        raise QuantizeError(f"num_images must be at least 1, got {num_images}")
    if size[0] % 16 or size[1] % 16:
        raise QuantizeError(f"calibration size {size[0]}x{size[1]} (HxW) must be multiples of 16")
    folder = calib_dir if calib_dir is not None else default_calib_dir()
    if folder is None:
        h, w = size
        arrays = [generated_dark_image(h, w, seed) for seed in range(num_images)]
        source = f"{num_images} generated dark images (no calibration folder; pass calib_dir for real photos)"
    else:
        folder = Path(folder)
        if not folder.is_dir():
            raise QuantizeError(f"calibration folder {folder} does not exist; pass a folder of low-light images")
        files = list_images(folder)
        if not files:
            raise QuantizeError(
                f"calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                "pass a folder of low-light photos"
            )
        from PIL import Image, UnidentifiedImageError
        from tqdm.auto import tqdm

        arrays = []
        for path in tqdm(pick_evenly(files, num_images), desc="int8 calibration images", unit="img",
                         disable=not progress, leave=False):
            try:
                with Image.open(path) as im:
                    arrays.append(center_fit(im, size))
            except (OSError, UnidentifiedImageError) as e:
                raise QuantizeError(f"calibration image {path} cannot be read ({e}); remove it or fix the file") from None
        source = f"{len(arrays)} images from {folder}"
    return [np.ascontiguousarray(a.transpose(2, 0, 1)[None]) for a in arrays], source


def make_reader(batches: list[np.ndarray], input_name: str = "input", progress: bool = False):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over prepared input batches."""
    from onnxruntime.quantization import CalibrationDataReader
    from tqdm.auto import tqdm

    class ImageCalibrationReader(CalibrationDataReader):
        """Feeds each batch once per pass; ``rewind`` restarts (ORT may make several passes)."""

        def __init__(self) -> None:
            self._i = 0
            self._bar = tqdm(total=len(batches), desc="int8 calibration", unit="img",
                             disable=not progress, leave=False)

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._i >= len(batches):
                self._bar.close()
                return None
            self._i += 1
            self._bar.update(1)
            return {input_name: batches[self._i - 1]}

        def rewind(self) -> None:
            self._i = 0

    return ImageCalibrationReader()


# --------------------------------------------------------------------------- graph helpers
def _constants(graph: "onnx.GraphProto") -> dict[str, np.ndarray]:
    """Initializers, Constant outputs and Identity aliases of them, by tensor name."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            attr = node.attribute[0]
            if attr.name == "value":
                consts[node.output[0]] = numpy_helper.to_array(attr.t)
        elif node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
    return consts


def batchnorm_to_depthwise_conv(model: "onnx.ModelProto") -> int:
    """Rewrite each inference BatchNormalization as an exact depthwise 1x1 Conv, in place.

    ``BN(x) = scale * (x - mean) / sqrt(var + eps) + bias`` is ``a * x + b`` per channel,
    i.e. a grouped 1x1 convolution with weight ``a`` (C x 1 x 1 x 1) and bias ``b``.

    Returns:
        How many nodes were rewritten.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = _constants(graph)
    nodes, added, count = [], [], 0
    for node in graph.node:
        params = node.input[1:5]
        if node.op_type != "BatchNormalization" or len(node.output) != 1 or not all(p in consts for p in params):
            nodes.append(node)
            continue
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        scale, bias, mean, var = (consts[p].astype(np.float64) for p in params)
        a = scale / np.sqrt(var + eps)
        b = bias - mean * a
        channels = a.shape[0]
        base = (node.name or node.output[0]).strip("/").replace("/", "_")
        w_name, b_name = f"{base}.dw_weight", f"{base}.dw_bias"
        added += [numpy_helper.from_array(a.reshape(channels, 1, 1, 1).astype(np.float32), w_name),
                  numpy_helper.from_array(b.astype(np.float32), b_name)]
        nodes.append(helper.make_node("Conv", [node.input[0], w_name, b_name], [node.output[0]],
                                      name=f"{node.name or base}_as_dwconv", group=channels,
                                      kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0]))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    _drop_unused_initializers(graph)
    return count


def _drop_unused_initializers(graph: "onnx.GraphProto") -> None:
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _initializer(graph: "onnx.GraphProto", name: str):
    return next((t for t in graph.initializer if t.name == name), None)


def _set_array(graph: "onnx.GraphProto", name: str, array: np.ndarray) -> None:
    from onnx import numpy_helper

    tensor = _initializer(graph, name)
    tensor.CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))


def _run_tensors(model: "onnx.ModelProto", names: list[str], batches: Sequence[np.ndarray],
                 input_name: str, reduce) -> dict[str, object]:
    """Run ``model`` with ``names`` as extra outputs and fold ``reduce(old, array)`` over the batches."""
    import onnx
    import onnxruntime as ort

    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    existing = {o.name for o in aug.graph.output}
    # declare each extra output with its own element type (a comparison gives bool, not float)
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.output)}
    for name in names:
        if name not in existing:
            elem = types.get(name) or onnx.TensorProto.FLOAT
            aug.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(aug.SerializeToString(), so, providers=["CPUExecutionProvider"])
    acc: dict[str, object] = {}
    for batch in batches:
        for name, value in zip(names, session.run(names, {input_name: batch})):
            acc[name] = reduce(acc.get(name), value)
    return acc


def _closure(graph: "onnx.GraphProto", tensor: str, channels: dict[str, int]) -> list[tuple[object, int]] | None:
    """Convolutions that read ``tensor``'s channels through channel-wise linear ops, with their channel offset.

    Per-channel positive scaling of ``tensor`` passes unchanged through LeakyReLU, MaxPool,
    Resize, multiplication by a one-channel map and Concat; every path must end in a
    Conv (plain or depthwise) that can absorb the inverse scale in its weights. None
    when some path ends anywhere else (graph output, Add, ...).
    """
    outputs = {o.name for o in graph.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    terminals: list[tuple[object, int]] = []
    stack = [(tensor, 0)]
    while stack:
        name, offset = stack.pop()
        if name in outputs or name not in consumers:
            return None
        for node, idx in consumers[name]:
            op = node.op_type
            if op == "Conv" and idx == 0:
                group = _attr(node, "group", 1)
                if group != 1 and (group != channels.get(name) or offset):
                    return None
                terminals.append((node, offset))
            elif op in ("LeakyRelu", "MaxPool") or (op == "Resize" and idx == 0):
                stack.append((node.output[0], offset))
            elif op == "Mul" and len(node.input) == 2 and channels.get(node.input[1 - idx]) == 1:
                stack.append((node.output[0], offset))
            elif op == "Concat":
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                if axis != 1 or any(channels.get(i) is None for i in node.input[:idx]):
                    return None
                stack.append((node.output[0], offset + sum(channels[i] for i in node.input[:idx])))
            else:
                return None
    return terminals


def equalize_channels(model: "onnx.ModelProto", batches: Sequence[np.ndarray], input_name: str,
                      alpha: float = 0.5) -> int:
    """Equalize per-channel activation ranges of every Conv output, exactly, in place.

    Per-tensor activation quantization wastes most of its 256 levels when a few channels
    are much wider than the rest (this generator's BatchNorm-after-LeakyReLU layers make
    ranges differ by 100x). For each Conv whose output channels reach only other Convs
    (see :func:`_closure`), output channel ``c`` is divided by ``s_c`` (weight row and
    bias) and the consuming Convs' input channel ``c`` is multiplied by ``s_c``; the
    network computes the same function (up to float rounding). ``s_c = (r_c / r)^alpha``
    where ``r_c`` is the channel's max |activation| on ``batches`` and ``r`` the geometric
    mean over channels (cross-layer equalization, Nagel et al. 2019, driven by
    activation statistics).

    Returns:
        How many Conv outputs were rescaled.
    """
    from onnx import numpy_helper

    graph = model.graph
    convs = [n for n in graph.node if n.op_type == "Conv" and _initializer(graph, n.input[1]) is not None]
    every = [o for n in graph.node for o in n.output if o]
    shapes = _run_tensors(model, every, [b[:, :, :32, :32] for b in batches[:1]], input_name,
                          lambda old, v: v.shape[1] if v.ndim == 4 else None)
    channels = {k: v for k, v in shapes.items() if v is not None}
    channels[input_name] = 3
    outs = [n.output[0] for n in convs]
    absmax = _run_tensors(model, outs, batches, input_name,
                          lambda old, v: np.maximum(old, np.abs(v).max(axis=(0, 2, 3))) if old is not None
                          else np.abs(v).max(axis=(0, 2, 3)))
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    done = 0
    for conv in convs:
        terminals = _closure(graph, conv.output[0], channels)
        if not terminals or any(uses.get(n.input[1], 0) != 1 for n in [conv] + [t for t, _ in terminals]):
            continue
        r = np.asarray(absmax[conv.output[0]], dtype=np.float64)
        alive = r > 1e-8
        if alive.sum() < 2:
            continue
        ref = np.exp(np.mean(np.log(r[alive])))
        scale = np.ones_like(r)
        scale[alive] = np.clip((r[alive] / ref) ** alpha, 1e-3, 1e3)
        w = numpy_helper.to_array(_initializer(graph, conv.input[1])).astype(np.float64)
        _set_array(graph, conv.input[1], w / scale.reshape(-1, 1, 1, 1))
        if len(conv.input) > 2 and conv.input[2]:
            b = numpy_helper.to_array(_initializer(graph, conv.input[2])).astype(np.float64)
            _set_array(graph, conv.input[2], b / scale)
        for term, offset in terminals:
            tw = numpy_helper.to_array(_initializer(graph, term.input[1])).astype(np.float64)
            group = _attr(term, "group", 1)
            sl = slice(offset, offset + len(scale))
            if group == 1:
                tw[:, sl] *= scale.reshape(1, -1, 1, 1)
            else:  # depthwise: input channel c is output channel c
                tw[sl] *= scale.reshape(-1, 1, 1, 1)
            _set_array(graph, term.input[1], tw)
        done += 1
    return done


def _attr(node: "onnx.NodeProto", name: str, default: int) -> int:
    """An integer attribute of ``node``, or ``default`` when it is not set."""
    return next((a.i for a in node.attribute if a.name == name), default)


def find_roles(model: "onnx.ModelProto") -> dict[str, list[str]]:
    """Node names of each structural role (see the module docstring), from the graph's topology."""
    graph = model.graph
    consts = _constants(graph)
    nodes = list(graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    roles: dict[str, list[str]] = {r: [] for r in ROLES}
    if not convs:
        return roles
    full = [i for i in convs if _attr(nodes[i], "group", 1) == 1] or convs
    first, last = convs[0], full[-1]
    roles["first_conv"] = [nodes[first].name]
    roles["head"] = [nodes[last].name]
    roles["prologue"] = [n.name for n in nodes[:first] if n.op_type not in ("Constant", "Identity")]
    concats = [i for i, n in enumerate(nodes[:last]) if n.op_type == "Concat"]
    if concats:
        roles["decoder_out"] = [n.name for n in nodes[concats[-1] + 1:last] if n.op_type not in ("Constant", "Identity")]
    # the tail: every node after the head (the graph is in execution order): the output head, the shoulder,
    # and the denoise filter, whose noise estimate reads the input itself and must stay float
    roles["tail"] = [n.name for n in nodes[last + 1:] if n.op_type not in ("Constant", "Identity")]
    for n in nodes:
        dynamic = [i for i in n.input if i and i not in consts]
        if n.op_type == "Mul" and len(dynamic) == 2:
            roles["attention"].append(n.name)
        elif n.op_type == "Concat":
            roles["concat"].append(n.name)
    return roles


def resolve_exclusions(model: "onnx.ModelProto", exclude: Iterable[str]) -> list[str]:
    """Expand roles and check node names; returns the node names to keep in float.

    Raises:
        QuantizeError: an entry is neither a role nor a node of the graph.
    """
    roles = find_roles(model)
    names = {n.name for n in model.graph.node}
    out: list[str] = []
    for entry in exclude:
        if entry in roles:
            out += roles[entry]
        elif entry in names:
            out.append(entry)
        else:
            raise QuantizeError(
                f"exclude entry {entry!r} is neither a role ({', '.join(ROLES)}) nor a node of the graph; "
                "list node names with onnx.load(path).graph.node"
            )
    return list(dict.fromkeys(n for n in out if n))


# --------------------------------------------------------------------------- main entry
def _read_meta(model: "onnx.ModelProto") -> tuple[ArtefactMeta, bool]:
    props = {p.key: p.value for p in model.metadata_props}
    return ArtefactMeta.from_props(props), any(k.startswith(PREFIX) for k in props)


def _input_name(model: "onnx.ModelProto", path: Path) -> str:
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise QuantizeError(f"{path} has inputs {inputs}; an engan generator has exactly one image input")
    return inputs[0]


def quantize_int8(
    fp32_onnx: Path,
    out: Path,
    calib_dir: Path | None = None,
    num_images: int = 32,
    progress: bool = True,
    exclude: list[str] | None = None,
    config: Int8Config = DEFAULT_CONFIG,
) -> Path:
    """Write an INT8 (QDQ) copy of an FP32 engan ONNX generator, calibrated on low-light images.

    Args:
        fp32_onnx: the FP32 model written by ``engan export`` (``model.onnx``).
        out: destination (``model.int8.onnx``); written atomically.
        calib_dir: folder of low-light images; None: ``../shared/data/train/low`` when
            present, else generated dark images.
        num_images: calibration images (spread evenly over the folder).
        progress: tqdm bars for decoding and calibration.
        exclude: node names and/or roles kept in float; None uses ``config.exclude``
            (:data:`DEFAULT_EXCLUDE`), ``[]`` quantizes everything quantizable.
        config: the recipe (see :class:`Int8Config`).

    Returns:
        ``out``.

    Raises:
        QuantizeError: the input is missing, not FP32, or calibration/quantization failed.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_onnx, out = Path(fp32_onnx), Path(out)
    if not fp32_onnx.is_file():
        raise QuantizeError(f"FP32 model not found: {fp32_onnx}; run `engan export` first (it writes model.onnx)")
    if fp32_onnx.resolve() == out.resolve():
        raise QuantizeError(f"refusing to overwrite the FP32 model {fp32_onnx}; write the INT8 model to another file")
    for name in ("activation_type", "weight_type"):
        if getattr(config, name) not in ("uint8", "int8"):
            raise QuantizeError(f"{name} must be 'uint8' or 'int8', got {getattr(config, name)!r}")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if config.calibrate_method not in methods:
        raise QuantizeError(f"calibrate_method must be one of {', '.join(methods)}, got {config.calibrate_method!r}")
    try:
        source_model = onnx.load(str(fp32_onnx))
    except Exception as e:  # protobuf raises DecodeError and friends
        raise QuantizeError(f"{fp32_onnx} is not a readable ONNX model ({type(e).__name__}: {e}); export it again") from None
    meta, has_meta = _read_meta(source_model)
    if has_meta and meta.precision != "fp32":
        raise QuantizeError(
            f"{fp32_onnx} is a {meta.precision} model; quantize the FP32 model.onnx written by `engan export`"
        )
    input_name = _input_name(source_model, fp32_onnx)
    batches, source = load_calibration_batches(calib_dir, num_images, config.calib_size, progress)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=out.parent) as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        quantized = Path(tmp) / "quantized.onnx"
        try:
            quant_pre_process(str(fp32_onnx), str(prepped), skip_symbolic_shape=True)
        except Exception as e:  # noqa: BLE001 - ORT tooling raises bare Exceptions
            raise QuantizeError(f"ONNX Runtime's quant_pre_process failed on {fp32_onnx}: {e}") from None
        model = onnx.load(str(prepped))
        if config.bn_as_conv:
            batchnorm_to_depthwise_conv(model)
        if config.equalize:
            equalize_channels(model, batches[:8], input_name, config.equalize_alpha)
        float_nodes = resolve_exclusions(model, config.exclude if exclude is None else exclude)
        onnx.save(model, str(prepped))
        qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        try:
            quantize_static(
                str(prepped), str(quantized), make_reader(batches, input_name, progress),
                quant_format=QuantFormat.QDQ, per_channel=config.per_channel, reduce_range=config.reduce_range,
                activation_type=qtype[config.activation_type], weight_type=qtype[config.weight_type],
                nodes_to_exclude=float_nodes, calibrate_method=methods[config.calibrate_method],
                extra_options={"WeightSymmetric": True},
            )
        except Exception as e:  # noqa: BLE001
            raise QuantizeError(f"ONNX Runtime static quantization of {fp32_onnx} failed: {type(e).__name__}: {e}") from None
        qmodel = onnx.load(str(quantized))

    extra = {**meta.extra, "int8_calibration": source, "int8_float_nodes": len(float_nodes),
             "int8_recipe": (f"qdq per_channel={config.per_channel} act={config.activation_type} "
                             f"weights={config.weight_type} reduce_range={config.reduce_range} "
                             f"bn_as_conv={config.bn_as_conv} equalize={config.equalize_alpha if config.equalize else 0} "
                             f"calib={config.calibrate_method} "
                             f"exclude={','.join(config.exclude if exclude is None else exclude) or 'none'}")}
    meta.precision = "int8"
    meta.extra = extra
    keep = [(p.key, p.value) for p in source_model.metadata_props if not p.key.startswith(PREFIX)]
    del qmodel.metadata_props[:]
    for key, value in keep + sorted(meta.to_props().items()):
        entry = qmodel.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_write_bytes(out, qmodel.SerializeToString())
    return out
