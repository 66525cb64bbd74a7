"""Fresh-process peak-memory probe of one backend (see :mod:`benchmarks.measure`).

Run by the benchmark as ``python -m benchmarks.memprobe --spec KEY --sizes HxW,... <
model.json``; prints one JSON line ``{"peak_mb": {"HxW": MiB, ...}, "kind": ...}``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True, help="runner key, e.g. ort-int8")
    parser.add_argument("--sizes", required=True, help="comma list of HxW sizes")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--workdir", type=Path, required=True, help="folder for engines/caches")
    args = parser.parse_args(argv)

    import onnxruntime  # noqa: F401 - imported before the baseline so library pages are not counted
    import torch

    from benchmarks.measure import hwm_bytes, reset_hwm, rss_bytes
    from benchmarks.models import BenchModel
    from benchmarks.runners import SPEC_BY_KEY, build_runner
    from benchmarks.settings import parse_size
    import engan.runtime.backends.ort  # noqa: F401

    model = BenchModel.from_json(sys.stdin.read())
    spec = SPEC_BY_KEY[args.spec]
    sizes = sorted((parse_size(s) for s in args.sizes.split(",")), key=lambda hw: hw[0] * hw[1])
    cuda = spec.device == "cuda"
    torch_row = cuda and not (spec.key.startswith("ort-") or spec.key.startswith("trt-"))
    if cuda:
        torch.cuda.init()
        free0, total = torch.cuda.mem_get_info()
    base = rss_bytes()
    runner = build_runner(spec, model, args.threads, args.workdir, min_hw=sizes[0], max_hw=sizes[-1])
    peaks: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for h, w in sizes:
        x = (rng.random((1, 3, h, w), dtype=np.float32) * 0.3).astype(np.float32)
        if torch_row:
            torch.cuda.reset_peak_memory_stats()
        if not cuda and not reset_hwm():
            print(json.dumps({"peak_mb": {}, "kind": "not measured: /proc/self/clear_refs unavailable"}))
            return 0
        runner.run(x)
        if torch_row:
            peak = torch.cuda.max_memory_allocated()
        elif cuda:
            peak = free0 - torch.cuda.mem_get_info()[0]
        else:
            peak = hwm_bytes() - base
        peaks[f"{h}x{w}"] = round(peak / 2**20, 1)
    runner.close()
    kind = ("cuda allocated (torch)" if torch_row else "cuda device memory in use") if cuda else \
        "RSS high-water mark - RSS before building the backend (fresh process)"
    print(json.dumps({"peak_mb": peaks, "kind": kind}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
