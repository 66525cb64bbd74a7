"""Artefact metadata: what an exported model promises about its input and output.

Written by ``engan export`` into ONNX ``metadata_props`` (and into the JSON sidecar of
a TensorRT engine); read back by the runtime so nothing is hard-coded. Torch-free.
"""
from __future__ import annotations

import dataclasses
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
