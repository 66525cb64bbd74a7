"""The runtime imports and enhances without torch, onnx or tensorrt."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from engan.runtime._optional import is_installed
from tests.helpers import REPO

RUNTIME = REPO / "runtime"

#: Packages no runtime module may import at module level (only lazily, inside functions).
HEAVY = {"torch", "onnx", "onnxruntime", "tensorrt", "cuda", "pycuda", "safetensors", "onnxscript",
         "onnxconverter_common", "scipy", "skimage", "torchvision", "openvino", "nncf", "ray", "pyarrow",
         "av"}
#: engan packages the runtime must never import at module level (dependency direction).
TRAINING = {"engan.models", "engan.losses", "engan.data", "engan.export", "engan.eval", "engan.cli"}

TORCH_FREE_SCRIPT = r"""
import json, sys
for name in ("torch", "onnx", "tensorrt", "safetensors", "torchvision"):
    sys.modules[name] = None  # importing any of them now raises ImportError

import engan.runtime as rt
after_import = sorted(m for m in ("onnxruntime", "numpy") if m in sys.modules)
backends = rt.available_backends()
after_available = "onnxruntime" in sys.modules

import numpy as np
enh = rt.Enhancer.load(sys.argv[1])
img = (np.random.default_rng(0).random((37, 53, 3)) * 90).astype(np.uint8)
out = enh.enhance(img)
gray = enh.enhance(img[..., 0])
heavy = sorted(m for m in ("torch", "onnx", "tensorrt", "safetensors", "engan.models") if sys.modules.get(m) is not None)
print(json.dumps({
    "after_import": after_import, "backends": backends, "after_available": after_available,
    "shape": list(out.shape), "dtype": str(out.dtype), "gray_shape": list(gray.shape),
    "changed": bool((out != img).any()), "heavy": heavy, "backend": enh.info["backend"],
}))
"""


def test_runtime_imports_and_enhances_with_torch_blocked(tiny_onnx):
    res = subprocess.run(
        [sys.executable, "-c", TORCH_FREE_SCRIPT, str(tiny_onnx)], capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["after_import"] == []  # `import engan.runtime` is lazy: not even onnxruntime yet
    assert report["after_available"] is False  # available_backends() uses find_spec, imports nothing
    assert report["backends"] == ["ort", "openvino"][: 1 + is_installed("openvino")]  # torch/tensorrt blocked
    assert report["shape"] == [37, 53, 3] and report["dtype"] == "uint8" and report["gray_shape"] == [37, 53]
    assert report["changed"] and report["backend"] == "onnxruntime"
    assert report["heavy"] == []


def _top_level_imports(path: Path) -> list[str]:
    """Modules imported at module level (not inside functions/classes, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                names.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.append(node.module)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)

    visit(tree.body)
    return names


def test_no_runtime_module_imports_heavy_packages_at_module_level():
    offenders = []
    for path in sorted(RUNTIME.rglob("*.py")):
        for name in _top_level_imports(path):
            root = name.split(".")[0]
            outside = name == "engan" or (name.startswith("engan.") and not name.startswith("engan.runtime"))
            if root in HEAVY or outside or any(name == t or name.startswith(t + ".") for t in TRAINING):
                offenders.append(f"{path.relative_to(REPO)}: import {name}")
    assert offenders == [], "move these imports inside the functions that need them:\n" + "\n".join(offenders)


EVERY_MODULE_SCRIPT = r"""
import importlib, json, pkgutil, sys
for name in ("torch", "onnx", "tensorrt", "safetensors", "torchvision", "scipy", "skimage", "av"):
    sys.modules[name] = None  # importing any of them now raises ImportError
import engan.runtime as rt
names = ["engan.runtime"] + [m.name for m in pkgutil.walk_packages(rt.__path__, "engan.runtime.")
                             if not m.name.endswith(".__main__")]  # that one runs the command
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.startswith("engan.") and not m.startswith("engan.runtime")
                and sys.modules[m] is not None)
heavy = sorted(m for m in ("onnxruntime", "tensorrt", "cuda") if sys.modules.get(m) is not None)
print(json.dumps({"modules": names, "outside": loaded, "heavy": heavy}))
"""


def test_every_runtime_module_imports_without_torch_or_training_code():
    """Each module under runtime/ (the CLI package, imageio, prepost, backends, video, new ones too) imports
    with torch, onnx, tensorrt and PyAV blocked, and pulls in nothing of engan outside engan.runtime."""
    res = subprocess.run([sys.executable, "-c", EVERY_MODULE_SCRIPT], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    on_disk = {".".join(("engan", "runtime", *p.relative_to(RUNTIME).with_suffix("").parts)).removesuffix(".__init__")
               for p in RUNTIME.rglob("*.py") if p.name != "__main__.py"}
    assert on_disk <= set(report["modules"]) | {"engan.runtime"}
    assert report["outside"] == [] and report["heavy"] == []


def test_importing_engan_runtime_is_cheap():
    code = "import sys, engan.runtime; print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % (sorted(HEAVY),)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
