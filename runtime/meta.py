"""Artefact metadata: what an exported model promises about its input and output.

Written by ``engan export`` into ONNX ``metadata_props`` (and into the JSON sidecar of
a TensorRT engine); read back by the runtime so nothing is hard-coded. Torch-free.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Collection

#: Prefix of every metadata key engan writes.
PREFIX = "engan."


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks: how engan names a checkpoint or artefact."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


#: Bounds of :func:`read_onnx_metadata`: top-level fields walked, and bytes read in all
#: (field keys, lengths and the metadata entries; everything else is skipped by seeking).
#: A real engan ONNX has about 35 top-level fields and 2 KB of metadata.
MAX_ONNX_FIELDS = 10_000
MAX_ONNX_READ = 4 << 20

#: ModelProto's fields (onnx.proto) and their protobuf wire types (0 varint, 2 length-delimited).
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_IR_VERSION, _GRAPH, _METADATA_PROPS = 1, 7, 14
_MAX_FIELD_NUMBER = (1 << 29) - 1


class OnnxFormatError(ValueError):
    """A file that is not a well-formed ONNX protobuf; ``detail`` says why without the file name."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.detail = detail


class _Protobuf:
    """Reads protobuf wire data from a binary file, counting every byte it reads."""

    def __init__(self, fh: IO[bytes], size: int, name: str) -> None:
        self.fh, self.size, self.name, self.read_bytes = fh, size, name, 0

    def error(self, detail: str) -> OnnxFormatError:
        return OnnxFormatError(self.name, detail)

    def take(self, n: int) -> bytes:
        self.read_bytes += n
        if self.read_bytes > MAX_ONNX_READ:
            raise self.error(f"not an engan model: over {MAX_ONNX_READ >> 20} MB of metadata and field headers")
        data = self.fh.read(n)
        if len(data) != n:
            raise self.error("truncated: the file ends inside a protobuf field")
        return data

    def varint(self) -> int:
        value = 0
        for shift in range(0, 70, 7):
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise self.error("not an ONNX model: a protobuf varint runs over 10 bytes")


def _entry(data: bytes, p: _Protobuf) -> tuple[str, str]:
    """A ``StringStringEntryProto`` {1: key, 2: value}."""
    out, pos = {1: "", 2: ""}, 0

    def varint() -> int:
        nonlocal pos
        value = 0
        for shift in range(0, 70, 7):
            if pos >= len(data):
                break
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise p.error("not an ONNX model: malformed metadata entry")

    while pos < len(data):
        key = varint()
        if key & 7 != 2 or key >> 3 not in out:
            raise p.error("not an ONNX model: malformed metadata entry")
        n = varint()
        if pos + n > len(data):
            raise p.error("not an ONNX model: malformed metadata entry")
        out[key >> 3] = data[pos:pos + n].decode("utf-8", "replace")
        pos += n
    return out[1], out[2]


def read_onnx_metadata(path: str | os.PathLike, keys: Collection[str] | None = None) -> dict[str, str]:
    """``metadata_props`` of an ONNX file, read without onnx or onnxruntime, with bounded work.

    Walks the top-level fields of ``ModelProto``: each field's key is checked (field
    number 1 to 2^29-1, wire type valid for protobuf and, for ModelProto's own fields,
    the one onnx.proto gives it) and its length checked against the file size before the
    field is skipped by seeking; only ``metadata_props`` entries are read. At most
    :data:`MAX_ONNX_FIELDS` fields and :data:`MAX_ONNX_READ` bytes are read, so a garbage
    or hostile file of any size is refused in milliseconds (a zero-filled file at its
    first byte: field number 0).

    Args:
        path: the file.
        keys: stop as soon as all these keys are read (the rest of the file is not checked).

    Raises:
        OnnxFormatError (a ValueError): not a well-formed ONNX protobuf; the message
            starts with the file name.
        OSError: the file cannot be opened or read.
    """
    name = Path(path).name
    props: dict[str, str] = {}
    wanted = set(keys) if keys else None
    seen: set[int] = set()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        p = _Protobuf(fh, size, name)
        pos = fields = 0
        while pos < size:
            fields += 1
            if fields > MAX_ONNX_FIELDS:
                raise p.error(f"not an ONNX model: over {MAX_ONNX_FIELDS} top-level protobuf fields")
            key = p.varint()
            field_no, wire = key >> 3, key & 7
            if not 1 <= field_no <= _MAX_FIELD_NUMBER:
                raise p.error(f"not an ONNX model: invalid protobuf field number {field_no} at byte {pos}")
            if wire not in (0, 1, 2, 5) or _MODEL_FIELDS.get(field_no, wire) != wire:
                raise p.error(f"not an ONNX model: invalid wire type {wire} for field {field_no} at byte {pos}")
            seen.add(field_no)
            if wire == 0:
                p.varint()
            elif wire == 2:
                n = p.varint()
                start = fh.tell()
                if n > size - start:
                    raise p.error(f"truncated: protobuf field {field_no} at byte {pos} needs {n} bytes, "
                                  f"{size - start} are left")
                if field_no == _METADATA_PROPS:
                    k, v = _entry(p.take(n), p)
                    props[k] = v
                    if wanted is not None and wanted <= props.keys():
                        return props
                else:
                    fh.seek(n, os.SEEK_CUR)
            else:
                fh.seek(8 if wire == 1 else 4, os.SEEK_CUR)
            pos = fh.tell()
        if pos != size:
            raise p.error("truncated: the file ends inside a protobuf field")
    missing = [what for no, what in ((_IR_VERSION, "ir_version"), (_GRAPH, "graph")) if no not in seen]
    if missing:
        raise p.error(f"not an ONNX model: no {' and no '.join(missing)}")
    return props
