"""CPU facts the runtime's defaults depend on, read in one place (torch-free, stdlib only).

On Linux the first processor block of ``/proc/cpuinfo`` gives the model name, vendor,
family/model and the feature flags; elsewhere only :func:`platform.processor` is known
and every feature reads as absent (so no default silently assumes a fast path).

The flags that matter here:

* ``amx_bf16`` / ``amx_tile`` (Intel Sapphire Rapids and later): bf16 matrix tiles,
  where OpenVINO runs BF16 by default;
* ``avx512_bf16`` (Cooper Lake, AMD Zen 4): bf16 dot products in AVX-512;
* ``avx512_vnni`` / ``avx_vnni``: int8 dot products (ONNX Runtime's INT8 path);
* ``avx2``: the baseline every x86 path assumes.

Anything that picks a default from these says so in its reason line, using
:meth:`CpuInfo.describe`.
"""
from __future__ import annotations

import functools
import platform
from dataclasses import dataclass, field

#: Flags reported by :meth:`CpuInfo.describe` and the benchmarks (they decide which low-precision paths are fast).
KNOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16",
               "amx_int8")

#: AMD family 25 (19h) models -> microarchitecture, for a readable name when a VM hides it ("AMD EPYC").
_AMD_19H = {range(0x00, 0x10): "Zen 3 (Milan)", range(0x10, 0x20): "Zen 4 (Genoa)",
            range(0x20, 0x30): "Zen 3", range(0x40, 0x50): "Zen 3+", range(0x50, 0x60): "Zen 3",
            range(0x60, 0x80): "Zen 4", range(0xA0, 0xB0): "Zen 4c (Bergamo)"}


@dataclass(frozen=True)
class CpuInfo:
    """What this process runs on.

    Attributes:
        model_name: ``model name`` from /proc/cpuinfo (e.g. ``AMD EPYC``), else :func:`platform.processor`.
        vendor: ``GenuineIntel``, ``AuthenticAMD`` or ``""``.
        family, model: the vendor's family/model numbers as text (``""`` when unknown).
        flags: every feature flag of the first processor.
    """

    model_name: str = "unknown"
    vendor: str = ""
    family: str = ""
    model: str = ""
    flags: frozenset[str] = field(default_factory=frozenset)

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def amx(self) -> bool:
        """AMX bf16 tiles (``amx_bf16`` and ``amx_tile``)."""
        return self.has("amx_bf16") and self.has("amx_tile")

    @property
    def avx512_bf16(self) -> bool:
        return self.has("avx512_bf16")

    @property
    def microarchitecture(self) -> str:
        """A guess from family/model where the model name does not say (AMD family 19h); else ``""``."""
        if self.vendor == "AuthenticAMD" and self.family == "25" and self.model.isdigit():
            return next((name for r, name in _AMD_19H.items() if int(self.model) in r), "")
        return ""

    def describe(self) -> str:
        """One line for reason strings: ``AMD EPYC, Zen 3 (Milan), AVX2`` or ``..., AVX-512 + VNNI/AVX512-BF16/AMX``."""
        name = self.model_name + (f", {self.microarchitecture}" if self.microarchitecture else "")
        simd = "AVX-512" if self.has("avx512f") else ("AVX2" if self.has("avx2") else "no AVX2")
        extras = [label for flag, label in (("avx512_vnni", "VNNI"), ("avx_vnni", "AVX-VNNI"),
                                            ("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX"))
                  if self.has(flag)]
        return f"{name}, {simd}" + (f" + {'/'.join(extras)}" if extras else "")


def parse_cpuinfo(text: str) -> CpuInfo:
    """A :class:`CpuInfo` from the text of ``/proc/cpuinfo`` (its first processor block)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough
            continue
        key, _, val = line.partition(":")
        fields.setdefault(key.strip(), val.strip())
    return CpuInfo(
        model_name=fields.get("model name") or platform.processor() or "unknown",
        vendor=fields.get("vendor_id", ""),
        family=fields.get("cpu family", ""),
        model=fields.get("model", ""),
        flags=frozenset(fields.get("flags", "").split()),
    )


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's :class:`CpuInfo` (read once per process)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return parse_cpuinfo(f.read(1 << 20))
    except OSError:
        return CpuInfo(model_name=platform.processor() or "unknown")


def bf16_capable(cpu: CpuInfo | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AMX or AVX512-BF16); elsewhere bf16 is emulated and slow."""
    cpu = cpu or cpu_info()
    return cpu.amx or cpu.avx512_bf16
