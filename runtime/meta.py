"""Artefact metadata: what an exported model promises about its input and output.

Written by ``engan export`` into ONNX ``metadata_props`` (and into the JSON sidecar of
a TensorRT engine); read back by the runtime so nothing is hard-coded. Torch-free.
"""
from __future__ import annotations

import dataclasses
import os
import json
from dataclasses import dataclass, field
from typing import Any

#: Prefix of every metadata key engan writes.
PREFIX = "engan."


@dataclass
class ArtefactMeta:
    """The input/output contract and provenance of an exported generator.

    The defaults are the contract every engan graph follows: float32 RGB in [0, 1],
    NCHW, H and W multiples of 16 (padding stays outside the graph), output the same.
    """

    version: str = ""
    model_name: str = ""
    preset: str = ""
    params: int = 0
    checkpoint_sha256: str = ""
    precision: str = "fp32"  # fp32 | fp16 | int8
    input_name: str = "input"
    output_name: str = "output"
    layout: str = "NCHW"
    color: str = "RGB"
    input_range: str = "0,1"
    pad_multiple: int = 16
    opset: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        """Flatten to string key/values (ONNX metadata_props)."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "extra":
                for k, ev in v.items():
                    out[PREFIX + "extra." + k] = ev if isinstance(ev, str) else json.dumps(ev)
            else:
                out[PREFIX + f.name] = str(v)
        return out

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ArtefactMeta":
        """Inverse of :meth:`to_props`; unknown keys are kept in ``extra``; missing keys keep defaults."""
        kw: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for k, v in props.items():
            if not k.startswith(PREFIX):
                continue
            name = k[len(PREFIX):]
            if name.startswith("extra."):
                extra[name[6:]] = v
            elif name in types:
                kw[name] = int(v) if types[name] in ("int", int) else v
        return cls(**kw, extra=extra)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ArtefactMeta":
        d = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """``metadata_props`` of an ONNX file, read without onnx or onnxruntime.

    Walks the top-level protobuf fields of ``ModelProto`` and skips the graph by its
    length, so it costs a file read and no parsing of the network (milliseconds).

    Raises:
        ValueError: the file is not a well-formed protobuf (truncated or not ONNX).
    """
    with open(path, "rb") as fh:
        buf = memoryview(fh.read())
    props: dict[str, str] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field_no, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError(f"{path}: truncated protobuf field {field_no}")
            if field_no == 14:  # metadata_props: StringStringEntryProto {1: key, 2: value}
                entry, p, k, v = buf[pos:pos + size], 0, "", ""
                while p < len(entry):
                    ekey, p = _varint(entry, p)
                    if ekey & 7 != 2:
                        raise ValueError(f"{path}: malformed metadata entry")
                    n, p = _varint(entry, p)
                    text = bytes(entry[p:p + n]).decode("utf-8", "replace")
                    p += n
                    if ekey >> 3 == 1:
                        k = text
                    elif ekey >> 3 == 2:
                        v = text
                props[k] = v
            pos += size
        else:
            raise ValueError(f"{path}: not an ONNX protobuf (wire type {wire} at byte {pos})")
    if pos != len(buf):
        raise ValueError(f"{path}: truncated protobuf")
    return props
