"""Exact ONNX graph rewrites that let more of the generator run in INT8, and the roles of its nodes.

* :func:`batchnorm_to_depthwise_conv`: the generator's BatchNorm follows its LeakyReLU, so
  ONNX Runtime cannot fold it into a convolution; as a 1x1 depthwise conv it runs in int8.
* :func:`equalize_channels`: rescales each conv's output channels (and the consuming
  convs compensate) so per-tensor uint8 activations can represent every channel.
* :func:`find_roles` / :func:`resolve_exclusions`: which nodes stay float, named by role
  so they work for either exporter's node naming:

``prologue``  the ops before the first convolution (luma/attention map, [-1, 1] scaling)
``first_conv`` the first convolution (sees the raw image)
``decoder_out`` the full-resolution decoder after the last skip concatenation, up to the head
``head``      the last full (ungrouped) convolution before a refine stage: the 1x1 conv producing the residual
              or curve
``refiner``   the hidden convolutions of a refine stage (``GeneratorConfig.refine``): the convolutions after the
              last concatenation before a DepthToSpace; its gain, its last convolution and the add back are tail
              strengths (the fixed depthwise convolutions of the ``denoise`` filter come after it)
``tail``      everything after the head (residual x attention, skip add, clamp, shoulder, denoise filter)
``attention`` the multiplications of two feature maps (features x attention map)
``concat``    the skip-connection concatenations
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnx

#: Structural roles accepted in ``exclude`` (see the module docstring).
ROLES = ("prologue", "first_conv", "decoder_out", "head", "tail", "attention", "concat", "refiner")


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
    refiner: list[int] = []
    d2s = [i for i, n in enumerate(nodes) if n.op_type == "DepthToSpace"]
    joins = [i for i, n in enumerate(nodes) if n.op_type == "Concat" and d2s and i < d2s[-1]]
    if joins and any(i < joins[-1] for i in full):  # a refine stage: it concatenates its inputs, convolves, shuffles
        start = joins[-1]
        last = max(i for i in full if i < start)  # the generator's head comes before it
        refiner = [i for i in full if start < i < d2s[-1]][:-1]  # its hidden convs; the last one joins the tail
        roles["refiner"] = [nodes[i].name for i in refiner]
    roles["first_conv"] = [nodes[first].name]
    roles["head"] = [nodes[last].name]
    roles["prologue"] = [n.name for n in nodes[:first] if n.op_type not in ("Constant", "Identity")]
    concats = [i for i, n in enumerate(nodes[:last]) if n.op_type == "Concat"]
    if concats:
        roles["decoder_out"] = [n.name for n in nodes[concats[-1] + 1:last] if n.op_type not in ("Constant", "Identity")]
    # the tail: every node after the head (the graph is in execution order): the output head, the shoulder,
    # and the denoise filter, whose noise estimate reads the input itself and must stay float
    roles["tail"] = [n.name for i, n in enumerate(nodes) if i > last and i not in refiner
                     and n.op_type not in ("Constant", "Identity")]
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
        ValueError: an entry is neither a role nor a node of the graph.
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
            raise ValueError(
                f"exclude entry {entry!r} is neither a role ({', '.join(ROLES)}) nor a node of the graph; "
                "list node names with onnx.load(path).graph.node"
            )
    return list(dict.fromkeys(n for n in out if n))

