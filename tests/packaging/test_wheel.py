"""The wheel as a user gets it: built from this checkout, with the shipped models inside, installed into
a fresh venv without torch, where ``import engan.runtime`` and ``engan-infer`` work from the installed
files (not the checkout).

The build runs on a copy of the packaged folders (pyproject's package-dir) in a temp folder, so the
checkout gets no build/ or *.egg-info (a stale build/lib would leak deleted modules into later wheels).
The fresh venv is made without pip (``venv --without-pip``) and this interpreter's pip installs into it
(``pip --python``); the base dependencies come from the configured package index. About 20 s on the
2-core CI box (3 s building, 14 s pip installing numpy, pillow and onnxruntime, 1 s running).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import REPO, make_image

pytestmark = pytest.mark.slow

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

#: Build artefacts never copied into the build folder.
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
#: Environment variables that would let the fresh venv see the checkout or this venv.
_SCRUB = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _pip_version() -> tuple[int, ...]:
    from pip import __version__

    return tuple(int(p) for p in __version__.split(".")[:2] if p.isdigit())


def _shipped_files() -> dict[str, Path]:
    """Wheel entry -> the checkout's file, for the model files: every runtime/models/*.onnx, and whatever else
    pyproject's package-data ships with engan.runtime (the model cards, the safetensors)."""
    cfg = _pyproject()["tool"]["setuptools"]
    src = REPO / cfg["package-dir"]["engan.runtime"]
    onnx = set((src / "models").glob("*.onnx"))
    assert onnx, f"no shipped .onnx under {src / 'models'}"
    data = {p for pattern in cfg["package-data"]["engan.runtime"] for p in src.glob(pattern) if p.is_file()}
    return {"engan/runtime/" + p.relative_to(src).as_posix(): p for p in sorted(onnx | data)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """engan-*.whl built from a copy of the checkout's packaged folders."""
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not installed in this interpreter: cannot build the wheel")
    src = tmp_path_factory.mktemp("src")
    cfg = _pyproject()
    for name in ("pyproject.toml", cfg["project"]["readme"]):
        shutil.copy2(REPO / name, src / name)
    for folder in sorted(set(cfg["tool"]["setuptools"]["package-dir"].values())):
        shutil.copytree(REPO / folder, src / folder, ignore=_IGNORE)
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation where setuptools is here (fast, offline); else pip fetches pyproject's build requires.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(out), str(src)], timeout=300)
    wheels = list(out.glob("engan-*.whl"))
    assert len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv (no system site-packages) with the wheel and its base dependencies: the python in it."""
    if importlib.util.find_spec("venv") is None:
        pytest.skip("the venv module is not available in this interpreter")
    root = tmp_path_factory.mktemp("venv") / "env"
    env = _clean_env()
    if _pip_version() >= (22, 3):  # pip --python: no ensurepip in the new venv (saves seconds)
        _run([sys.executable, "-m", "venv", "--without-pip", str(root)], timeout=120, env=env)
        python = _venv_python(root)
        pip = [sys.executable, "-m", "pip", "--python", str(python)]
    else:
        res = subprocess.run([sys.executable, "-m", "venv", str(root)], capture_output=True, text=True, timeout=300,
                             env=env)
        if res.returncode != 0:
            pytest.skip(f"cannot create a venv with pip here (python -m venv: {res.stderr.strip()[-300:]})")
        python = _venv_python(root)
        pip = [str(python), "-m", "pip"]
    _run([*pip, "install", "-q", "--disable-pip-version-check", str(wheel)], timeout=600, env=env)
    return python


def _venv_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _clean_env(python: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env["PYTHONNOUSERSITE"] = "1"  # no ~/.local packages (torch could be there)
    if python is not None:
        env["VIRTUAL_ENV"] = str(python.parent.parent)
        env["PATH"] = os.pathsep.join([str(python.parent), env.get("PATH", "")])
    return env


def test_the_wheel_ships_the_models_byte_for_byte(wheel):
    files = _shipped_files()
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for entry, path in files.items():
            assert entry in names, f"{entry} missing from {wheel.name}"
            assert zf.read(entry) == path.read_bytes(), f"{entry} in {wheel.name} differs from {path}"
        assert {"engan/runtime/__init__.py", "engan/export/__init__.py", "engan/__init__.py"} <= names
        assert not any(n.startswith(("runtime/", "export/", "tests/")) for n in names)  # never top-level


_IMPORT_CHECK = r"""
import importlib.util, json, sys, sysconfig
torch_spec = importlib.util.find_spec("torch")
import engan.runtime, engan.runtime.shipped
print(json.dumps({"file": engan.runtime.__file__, "purelib": sysconfig.get_paths()["purelib"],
                  "torch_installed": torch_spec is not None, "torch_imported": "torch" in sys.modules,
                  "shipped": engan.runtime.shipped.list_shipped()}))
"""


def test_fresh_venv_imports_the_installed_runtime_without_torch(venv, tmp_path):
    res = _run([str(venv), "-I", "-c", _IMPORT_CHECK], timeout=120, cwd=tmp_path, env=_clean_env(venv))
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert not info["torch_installed"], "torch is importable in the fresh venv: the test would prove nothing"
    site = Path(info["purelib"]).resolve()
    installed = Path(info["file"]).resolve()
    assert installed.is_relative_to(site), f"engan.runtime imported from {installed}, not the venv's {site}"
    assert not installed.is_relative_to(REPO.resolve()), installed
    assert not info["torch_imported"]
    assert info["shipped"], "no shipped model found in the installed package"
    assert sysconfig.get_paths()["purelib"] != info["purelib"]  # really another environment


def test_fresh_venv_engan_infer_enhances_two_photos_with_the_shipped_model(venv, tmp_path):
    from engan.runtime.shipped import DEFAULT_MODEL, model_card

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    sizes = {"a.png": (37, 53), "b.png": (64, 48)}  # (h, w)
    for i, (name, (h, w)) in enumerate(sizes.items()):
        Image.fromarray(make_image(h, w, seed=i, dark=0.2)).save(src / name)
    exe = venv.parent / ("engan-infer.exe" if os.name == "nt" else "engan-infer")
    assert exe.is_file(), f"the wheel installed no engan-infer script in {venv.parent}"
    res = subprocess.run([str(exe), *(str(src / n) for n in sizes), str(out)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env=_clean_env(venv))
    assert res.returncode == 0, res.stdout + res.stderr
    for name, (h, w) in sizes.items():
        with Image.open(out / name) as im:
            assert im.size == (w, h), name
    first = res.stderr.splitlines()[0]
    version = model_card(DEFAULT_MODEL)["version"]  # the checkout's card: the wheel ships the same files
    assert first.startswith(f"{DEFAULT_MODEL} {version} · "), res.stderr
    assert res.stdout.strip().splitlines()[-1].startswith("2 enhanced, 0 failed, 0 skipped in "), res.stdout
