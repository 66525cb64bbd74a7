"""What the benchmark ran on: CPU, threads, GPU, library versions and the measured peak.

The peak is measured, not taken from a data sheet: the best of a few square matmuls
(fp32, and bf16 where the CPU has native bf16) and of one 3x3 convolution shaped
like the generator's middle layers, all on the threads the benchmark uses. Every
row's achieved GFLOP/s is then a share of this number ("how far from the limit").
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from typing import Any

#: CPU feature flags worth reporting (they decide which low-precision paths can be fast).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8")
#: Libraries whose versions go into every result file.
LIBRARIES = ("numpy", "torch", "onnxruntime", "onnxruntime-gpu", "onnx", "pillow", "tensorrt", "openvino", "nncf",
             "ray", "engan")


def cpu_info() -> dict[str, Any]:
    """CPU model, vendor family/model, microarchitecture guess and the relevant flags
    (read by :func:`engan.runtime.cpu.cpu_info`, the runtime's one CPU reader)."""
    from engan.runtime.cpu import cpu_info as runtime_cpu_info

    cpu = runtime_cpu_info()
    return {
        "model_name": cpu.model_name,
        "vendor": cpu.vendor,
        "family": cpu.family,
        "model": cpu.model,
        "microarchitecture": cpu.microarchitecture,
        "flags": {f: cpu.has(f) for f in CPU_FLAGS},
        "logical_cpus": os.cpu_count(),
    }


def native_bf16(cpu: dict[str, Any]) -> bool:
    """True when the CPU has bf16 arithmetic (AVX-512 BF16 or AMX); otherwise bf16 is emulated and slow."""
    return bool(cpu["flags"].get("avx512_bf16") or cpu["flags"].get("amx_bf16"))


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide the numbers (absent ones are left out)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def gpu_info() -> dict[str, Any] | None:
    """Name, capability and memory of CUDA device 0 through torch, or None without a CUDA GPU."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(0)
        return {"name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda}
    except Exception:  # noqa: BLE001 - a broken driver is "no GPU" for the report
        return None


def effective_seconds(wall_s: float, cpu_s: float, threads: int) -> float:
    """The time a call would take on idle cores: ``min(wall, CPU time / threads)``.

    On a quiet machine CPU time / threads >= wall (imperfect scaling), so this is the wall
    time; when other jobs take the cores, wall time grows but CPU time does not, and
    CPU time / threads is the better estimate. Used for the peak and for every row's
    achieved GFLOP/s, so that "% of peak" compares like with like under load.
    """
    return min(wall_s, cpu_s / max(threads, 1))


def _best_seconds(fn, repeats: int, threads: int) -> float:
    fn()  # warm-up (allocation, kernel selection)
    best = float("inf")
    for _ in range(repeats):
        c, t = time.process_time(), time.perf_counter()
        fn()
        best = min(best, effective_seconds(time.perf_counter() - t, time.process_time() - c, threads))
    return best


def measure_peak_gflops(threads: int, quick: bool = False, bf16: bool = True) -> dict[str, Any]:
    """Measured peak GFLOP/s on ``threads`` threads: fp32 matmul, fp32 3x3 conv and bf16 matmul.

    Args:
        threads: torch intra-op threads to measure with (those the benchmark uses).
        quick: smaller problems and fewer repeats (seconds instead of ~10 s).
        bf16: measure bf16 at all. Without native bf16 a small matmul is measured only to
            show how slow the emulation is.

    Returns:
        ``{"fp32": .., "fp32_conv": .., "bf16": .., "method": ..}`` (GFLOP/s, rounded).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sizes = (1024,) if quick else (1024, 2048)
        repeats = 2 if quick else 4
        out: dict[str, Any] = {}
        best = 0.0
        for n in sizes:
            a, b = torch.randn(n, n), torch.randn(n, n)
            best = max(best, 2 * n**3 / _best_seconds(lambda: a @ b, repeats, threads) / 1e9)
        out["fp32"] = round(best, 1)
        conv = torch.nn.Conv2d(128, 128, 3, padding=1).eval()
        x = torch.randn(1, 128, 50, 76 if quick else 152)
        with torch.inference_mode():
            sec = _best_seconds(lambda: conv(x), repeats, threads)
        out["fp32_conv"] = round(2 * 128 * 128 * 9 * x.shape[-2] * x.shape[-1] / sec / 1e9, 1)
        if bf16:
            native = native_bf16(cpu_info())
            n = (2048 if not quick else 1024) if native else 256
            a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
            out["bf16"] = round(2 * n**3 / _best_seconds(lambda: a @ b, repeats, threads) / 1e9, 1)
            out["bf16_native"] = native
        out["method"] = (f"best of {repeats} torch matmuls n={'/'.join(map(str, sizes))} and a 128->128 3x3 conv, "
                         f"{threads} thread{'' if threads == 1 else 's'}, time = min(wall, CPU time / threads)")
        return out
    finally:
        torch.set_num_threads(previous)


def measure_gpu_peak_gflops(quick: bool = False) -> dict[str, Any] | None:
    """Measured matmul peak GFLOP/s of CUDA device 0: fp32 (TF32 off, as the fp32 reference runs) and fp16.

    Timed with CUDA events, best of 5 square products after a warm-up. None without a CUDA GPU.
    GPU rows' "% peak" divide by these (fp16 rows by the fp16 peak), never by the CPU's.
    """
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    n, repeats = (2048, 3) if quick else (4096, 5)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    out: dict[str, Any] = {}
    try:
        for key, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            a = torch.randn(n, n, device="cuda", dtype=dtype)
            b = torch.randn(n, n, device="cuda", dtype=dtype)
            a @ b  # warm-up: kernel selection
            torch.cuda.synchronize()
            best = float("inf")
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                a @ b
                end.record()
                end.synchronize()
                best = min(best, start.elapsed_time(end) / 1e3)
            out[key] = round(2 * n**3 / best / 1e9, 1)
            del a, b
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    out["method"] = f"best of {repeats} torch.cuda matmuls n={n}, CUDA events, TF32 off for fp32"
    return out


def peak_for(machine: dict[str, Any], device: str, precision: str) -> tuple[float | None, str | None]:
    """The measured peak a row of ``device``/``precision`` is compared with, and its name.

    CPU rows: the CPU's fp32 matmul peak (bf16 rows: its bf16 peak). CUDA rows: the GPU's fp32
    peak (fp16 rows: its fp16 peak); (None, None) when that peak was not measured.
    """
    if device == "cuda":
        peak, key = machine.get("gpu_peak_gflops") or {}, "fp16" if precision == "fp16" else "fp32"
        name = f"gpu {key}"
    else:
        peak, key = machine.get("peak_gflops") or {}, "bf16" if precision == "bf16" else "fp32"
        name = key
    value = peak.get(key)
    return (value, name) if value else (None, None)


def load_average() -> tuple[float, float, float] | None:
    """The 1/5/15-minute load average (how busy the shared machine was)."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return None


def machine_info(threads: int, quick: bool = False, measure_peak: bool = True) -> dict[str, Any]:
    """Everything the report says about the machine (see the module docstring)."""
    cpu = cpu_info()
    info: dict[str, Any] = {
        "cpu": cpu,
        "threads": threads,
        "gpu": gpu_info(),
        "os": f"{platform.system()} {platform.release()}",
        "libraries": library_versions(),
        "load_average_start": load_average(),
    }
    if measure_peak:
        info["peak_gflops"] = measure_peak_gflops(threads, quick=quick)
        if info["gpu"]:
            info["gpu_peak_gflops"] = measure_gpu_peak_gflops(quick=quick)
    return info


def describe_cpu(info: dict[str, Any]) -> str:
    """One line: ``AMD EPYC (Zen 3 (Milan)), 2 threads, AVX2, no AVX-512``."""
    cpu = info["cpu"]
    flags = cpu["flags"]
    name = cpu["model_name"] + (f" ({cpu['microarchitecture']})" if cpu["microarchitecture"] else "")
    simd = "AVX-512" if flags.get("avx512f") else ("AVX2" if flags.get("avx2") else "no AVX2")
    extras = [label for key, label in (("avx512_vnni", "VNNI"), ("avx_vnni", "AVX-VNNI"),
                                       ("avx512_bf16", "BF16"), ("amx_bf16", "AMX")) if flags.get(key)]
    n = info["threads"]
    return f"{name}, {n} thread{'' if n == 1 else 's'} of {cpu['logical_cpus']}, {simd}" + (
        f" + {'/'.join(extras)}" if extras else " (no VNNI, no native BF16)")
