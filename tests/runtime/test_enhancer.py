"""engan.runtime.Enhancer: image kinds, odd sizes, batches, tiling, threads, shipped models."""
from __future__ import annotations

import io
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from tests.helpers import export_test_onnx, make_image
from PIL import Image

from engan.runtime import Enhancer, ModelNotShippedError, prepost, shipped
from engan.runtime.parity import psnr


@pytest.fixture(scope="module")
def enh(tiny_onnx):
    with Enhancer.load(tiny_onnx, device="cpu") as e:
        yield e


@pytest.fixture(scope="module")
def strong_onnx(tmp_path_factory):
    """A tiny generator with large random weights: its output depends on wide context,
    so tiling errors are visible (the seeded fixture model is almost pointwise)."""
    import torch

    from engan.models import create_generator
    from engan.runtime.meta import ArtefactMeta

    torch.manual_seed(0)
    g = create_generator("tiny").eval()
    for m in g.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, a=0.2)
            torch.nn.init.normal_(m.bias, 0, 0.1)
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2)
    return export_test_onnx(g, tmp_path_factory.mktemp("strong") / "strong.onnx",
                            ArtefactMeta(model_name="strong", preset="tiny"))


def _reference(enh: Enhancer, rgb01: np.ndarray) -> np.ndarray:
    """Float HxWx3 result through the backend directly (pad, run, crop)."""
    x = prepost.hwc_to_nchw(rgb01.astype(np.float32))
    return prepost.nchw_to_hwc(np.clip(prepost.run_padded(enh.backend.run, x), 0, 1))[0]


# ------------------------------------------------------------------ basics
def test_rgb_uint8_keeps_kind_size_and_matches_the_backend(enh):
    img = make_image(40, 56)
    out = enh.enhance(img)
    assert out.shape == img.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, prepost.to_uint8(_reference(enh, img / np.float32(255))))
    assert psnr(out, img, peak=255.0) < 35  # the model does change the image


@pytest.fixture(scope="module")
def tiny_generator(tiny_checkpoint):
    from engan.models.checkpoint import load_generator

    return load_generator(tiny_checkpoint)


@pytest.mark.parametrize("h,w", [(17, 999), (1, 1), (15, 15), (1, 40), (33, 2), (16, 16)])
def test_odd_sizes_match_eager_torch(enh, tiny_generator, h, w):
    import torch

    from engan.models import enhance_tensor

    x = make_image(h, w, seed=h + w).astype(np.float32) / 255
    out = enh.enhance(x)
    assert out.shape == (h, w, 3) and out.dtype == np.float32
    ref = enhance_tensor(tiny_generator, torch.from_numpy(prepost.hwc_to_nchw(x)))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert enh.enhance(make_image(h, w)).shape == (h, w, 3)


def test_info_says_what_runs_and_why(enh, tiny_onnx):
    info = enh.info
    assert info["backend"] == "onnxruntime" and info["device"] == "cpu" and info["precision"] == "fp32"
    assert info["model"] == str(tiny_onnx) and info["model_name"] == "tiny-test" and info["preset"] == "tiny"
    assert info["model_version"] == "0.1.0" and info["providers"] == ["CPUExecutionProvider"]
    assert info["reason"].startswith("ONNX Runtime")
    assert info["max_pixels"] == prepost.DEFAULT_MAX_PIXELS and info["pad_multiple"] == 16
    assert "onnxruntime" in repr(enh)


def test_warmup_runs_the_backend(enh):
    assert enh.warmup(size=(20, 20)) > 0


# ------------------------------------------------------------------ numpy kinds
def test_gray_and_gray_alpha_arrays(enh):
    rgb = make_image(24, 40)
    gray = rgb[..., 1]
    expected = prepost.to_uint8(prepost.luma(_reference(enh, prepost.gray_to_rgb(gray / np.float32(255)))))
    out = enh.enhance(gray)
    assert out.shape == gray.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(enh.enhance(gray[..., None])[..., 0], expected)
    alpha = np.arange(24 * 40, dtype=np.uint32).reshape(24, 40).astype(np.uint8)
    la = enh.enhance(np.stack([gray, alpha], -1))
    assert la.shape == (24, 40, 2)
    np.testing.assert_array_equal(la[..., 0], expected)
    np.testing.assert_array_equal(la[..., 1], alpha)


def test_rgba_array_carries_alpha_untouched(enh):
    rgb = make_image(24, 40)
    alpha = np.random.default_rng(0).integers(0, 256, (24, 40, 1), dtype=np.uint8)
    out = enh.enhance(np.concatenate([rgb, alpha], -1))
    assert out.shape == (24, 40, 4)
    np.testing.assert_array_equal(out[..., 3:], alpha)
    np.testing.assert_array_equal(out[..., :3], enh.enhance(rgb))


def test_uint16_is_processed_in_float_and_returned_16_bit(enh):
    img16 = (make_image(24, 40).astype(np.uint16) * 257 + np.arange(40, dtype=np.uint16)[:, None]).astype(np.uint16)
    out = enh.enhance(img16)
    assert out.dtype == np.uint16 and out.shape == img16.shape
    np.testing.assert_array_equal(out, prepost.to_uint16(_reference(enh, img16 / np.float32(65535))))
    assert np.any(out % 257 != 0)  # real 16-bit values, not 8-bit ones scaled up


def test_float_arrays_come_back_as_the_same_float(enh):
    x = make_image(24, 40).astype(np.float64) / 255
    out = enh.enhance(x)
    assert out.dtype == np.float64 and 0 <= out.min() and out.max() <= 1
    np.testing.assert_allclose(out, _reference(enh, x.astype(np.float32)), atol=1e-6)


def test_bad_inputs_are_refused_with_the_reason(enh):
    with pytest.raises(TypeError, match="enhance\\(\\) takes a numpy HxWx3 array or a PIL image, got list"):
        enh.enhance([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"expected an HxWx3 RGB image .* got shape \(4, 4, 5\)"):
        enh.enhance(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(TypeError, match="unsupported pixel dtype int32"):
        enh.enhance(np.zeros((4, 4, 3), np.int32))
    with pytest.raises(ValueError, match="the image is empty"):
        enh.enhance(np.zeros((0, 4, 3), np.uint8))


# ------------------------------------------------------------------ PIL modes
def test_pil_rgb_keeps_mode_and_info(enh):
    img = make_image(24, 40)
    pil = Image.fromarray(img)
    pil.info["icc_profile"] = b"fake-icc"
    out = enh.enhance(pil)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (40, 24)
    assert out.info["icc_profile"] == b"fake-icc"
    np.testing.assert_array_equal(np.asarray(out), enh.enhance(img))


@pytest.mark.parametrize(
    "mode,out_mode",
    [("L", "L"), ("LA", "LA"), ("RGBA", "RGBA"), ("P", "RGB"), ("PA", "RGBA"), ("CMYK", "RGB"), ("1", "L"),
     ("RGBX", "RGBX"), ("YCbCr", "RGB"), ("I;16", "I;16"), ("I;16B", "I;16B"), ("I", "I"), ("F", "F")],
)
def test_pil_modes(enh, mode, out_mode):
    base = Image.fromarray(make_image(24, 40))
    if mode in ("I;16", "I;16B", "I"):
        arr16 = (np.asarray(base.convert("L")).astype(np.uint32) * 257).astype(np.uint16)
        pil = Image.frombytes(mode if mode != "I" else "I;16", (40, 24), arr16.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
        if mode == "I":
            pil = Image.fromarray(arr16.astype(np.int32))
    elif mode == "F":
        pil = Image.fromarray(np.asarray(base.convert("L"), dtype=np.float32) / 255)
    elif mode == "PA":
        pil = base.convert("P").convert("PA")
    else:
        pil = base.convert(mode)
    out = enh.enhance(pil)
    assert out.mode == out_mode and out.size == pil.size
    if mode in ("LA", "RGBA", "PA"):
        np.testing.assert_array_equal(np.asarray(out)[..., -1], np.asarray(pil.convert(out_mode))[..., -1])
    if mode in ("I;16", "I;16B", "I"):
        vals = np.asarray(out).astype(np.int64)
        assert vals.max() > 255 and np.any(vals % 257 != 0)  # still 16-bit precision
    if mode == "F":
        assert np.asarray(out).dtype == np.float32 and 0 <= np.asarray(out).max() <= 1


def test_pil_palette_with_transparency_returns_rgba(enh):
    pil = Image.fromarray(make_image(24, 40)).convert("P")
    pil.info["transparency"] = 0
    out = enh.enhance(pil)
    assert out.mode == "RGBA"


def test_pil_round_trip_through_png_bytes(enh):
    buf = io.BytesIO()
    Image.fromarray(make_image(24, 40)).convert("LA").save(buf, format="PNG")
    out = enh.enhance(Image.open(io.BytesIO(buf.getvalue())))
    assert out.mode == "LA" and out.size == (40, 24)


# ------------------------------------------------------------------ batches, tiling, threads
def test_enhance_batch_stacks_same_size_images(enh, monkeypatch):
    images = [make_image(24, 40, seed=s) for s in range(3)] + [make_image(17, 33, seed=9)]
    singles = [enh.enhance(im) for im in images]
    calls = []
    run = enh.backend.run
    monkeypatch.setattr(enh.backend, "run", lambda x: (calls.append(x.shape), run(x))[1])
    outs = enh.enhance_batch(images + [Image.fromarray(images[0])])
    assert sorted(calls) == [(1, 3, 32, 48), (1, 3, 32, 48), (3, 3, 32, 48)] or sorted(calls) == [(1, 3, 32, 48), (4, 3, 32, 48)]
    for a, b in zip(outs[:4], singles):
        np.testing.assert_array_equal(a, b)
    assert isinstance(outs[4], Image.Image)
    np.testing.assert_array_equal(np.asarray(outs[4]), singles[0])


@pytest.mark.parametrize("model", ["tiny", "strong"])
def test_tiled_matches_untiled(tiny_onnx, strong_onnx, model):
    path = tiny_onnx if model == "tiny" else strong_onnx
    x = make_image(240, 320, seed=5).astype(np.float32) / 255
    with Enhancer.load(path, device="cpu", max_pixels=None) as whole:
        ref = whole.enhance(x)
    with Enhancer.load(path, device="cpu", max_pixels=192 * 192, overlap=64) as tiled:
        calls = []
        run = tiled.backend.run
        tiled.backend.run = lambda a: (calls.append(a.shape), run(a))[1]
        out = tiled.enhance(x)
    assert len(calls) > 1 and all(n * h * w <= 192 * 192 for n, _, h, w in calls)
    assert psnr(out, ref, peak=1.0) >= 40.0, psnr(out, ref, peak=1.0)


def test_forced_tile_size(tiny_onnx):
    with Enhancer.load(tiny_onnx, device="cpu", tile=64, overlap=32) as e:
        calls = []
        run = e.backend.run
        e.backend.run = lambda a: (calls.append(a.shape), run(a))[1]
        e.enhance(make_image(100, 150))
    assert set(calls) == {(1, 3, 64, 64)} and len(calls) > 4
    with pytest.raises(ValueError, match="tile must be a positive multiple of 16, got 50"):
        Enhancer.load(tiny_onnx, tile=50)


def test_eight_threads_give_the_same_pixels_as_sequential_use(enh):
    images = [make_image(24 + 16 * (i % 3), 40 + 8 * (i % 4), seed=i) for i in range(16)]
    sequential = [enh.enhance(im) for im in images]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(enh.enhance, images))
    for a, b in zip(sequential, threaded):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ model resolution
def test_no_shipped_model_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "models")
    with pytest.raises(ModelNotShippedError) as err:
        Enhancer.load()
    assert isinstance(err.value, FileNotFoundError)
    assert "no model ships with this build yet" in str(err.value)
    assert "pass --model FILE.onnx (from `engan export`)" in str(err.value)
    with pytest.raises(ModelNotShippedError, match="'engan-lite' is not a shipped model: no model ships with this build yet"):
        Enhancer.load("engan-lite")
    assert shipped.list_shipped() == []


def test_shipped_model_names_resolve(tmp_path, monkeypatch, tiny_onnx, tiny_checkpoint):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_onnx, models / "engan-lite.onnx")
    shutil.copy(tiny_checkpoint, models / "engan-lite.safetensors")
    (models / "engan-lite.json").write_text('{"name": "engan-lite"}')
    monkeypatch.setattr(shipped, "SHIPPED_DIR", models)
    assert shipped.list_shipped() == ["engan-lite"] and shipped.list_shipped("safetensors") == ["engan-lite"]
    assert shipped.default_model_path() == models / "engan-lite.onnx"
    assert shipped.model_card("engan-lite") == {"name": "engan-lite"}
    with Enhancer.load(device="cpu") as e:
        assert e.info["model"] == str(models / "engan-lite.onnx")
    with Enhancer.load("engan-lite", backend="torch", device="cpu") as e:
        assert e.info["backend"] == "torch" and e.info["model"] == str(models / "engan-lite.safetensors")
    with pytest.raises(ModelNotShippedError, match="'engan-max' is not a shipped model with a .onnx file; shipped: engan-lite"):
        Enhancer.load("engan-max")


def test_missing_model_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"model not found: {tmp_path / 'x.onnx'}; pass an existing .onnx"):
        Enhancer.load(tmp_path / "x.onnx")


def test_checkpoints_run_on_torch_and_match_onnx(enh, tiny_checkpoint):
    img = make_image(40, 56)
    with Enhancer.load(tiny_checkpoint.parent, device="cpu") as t:  # the run folder
        assert t.info["backend"] == "torch" and t.info["reason"].startswith("PyTorch: the model is a .safetensors")
        out = t.enhance(img)
    assert np.abs(out.astype(int) - enh.enhance(img).astype(int)).max() <= 1
    with pytest.raises(ValueError, match="precision='fp16' applies to the PyTorch and OpenVINO backends only"):
        Enhancer.load(enh.info["model"], precision="fp16")


def test_auto_falls_back_to_onnx_runtime_when_tensorrt_cannot_load(tmp_path, tiny_onnx, monkeypatch):
    from engan.runtime import select

    shutil.copy(tiny_onnx, tmp_path / "model.onnx")
    (tmp_path / "model.gpu.trt10.fp16.engine").write_bytes(b"not really an engine")
    monkeypatch.setattr(select, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(select, "is_installed", lambda m: True)
    monkeypatch.setattr(select, "engine_compatibility", lambda engine, index=0: None)
    with pytest.warns(RuntimeWarning, match="TensorRT could not start model.gpu.trt10.fp16.engine .*; using ONNX Runtime"):
        e = Enhancer.load(tmp_path / "model.onnx", device="auto")
    assert e.info["backend"] == "onnxruntime"
    assert e.info["reason"].startswith("ONNX Runtime CPU: model.onnx as given (TensorRT not used: "
                                       "model.gpu.trt10.fp16.engine failed to start (")
    e.close()


class _IdentityBackend:
    """A backend with a TensorRT-like profile (min/max shapes) that returns its input."""

    def __init__(self, shape_min, shape_max):
        from engan.runtime.backends.base import BackendInfo
        from engan.runtime.meta import ArtefactMeta

        self.info = BackendInfo(name="identity", device="cpu", shape_min=shape_min, shape_max=shape_max)
        self.meta = ArtefactMeta(model_name="identity")
        self.calls: list[tuple[int, ...]] = []

    def run(self, x):
        self.calls.append(x.shape)
        assert all(lo <= s <= hi for s, lo, hi in zip(x.shape, self.info.shape_min, self.info.shape_max)), x.shape
        return x.copy()

    def close(self):
        pass


def test_backend_shape_limits_are_respected():
    be = _IdentityBackend((1, 3, 64, 64), (2, 3, 128, 160))
    e = Enhancer(be, max_pixels=None)
    small = make_image(20, 30)
    np.testing.assert_array_equal(e.enhance(small), small)  # padded up to the min shape, cropped back
    assert be.calls == [(1, 3, 64, 64)]
    be.calls.clear()
    big = make_image(300, 200, seed=3)
    np.testing.assert_array_equal(e.enhance(big), big)  # tiled to fit the max shape, blended back exactly
    assert len(be.calls) > 1 and all(h <= 128 and w <= 160 for _, _, h, w in be.calls)
    be.calls.clear()
    e.enhance_batch([make_image(64, 64, seed=s) for s in range(5)])
    assert [c[0] for c in be.calls] == [2, 2, 1]
    assert e.warmup(size=(16, 500)) >= 0 and be.calls[-1] == (1, 3, 64, 160)


def test_auto_falls_back_to_the_cpu_when_the_cuda_session_fails(tiny_onnx, monkeypatch):
    import onnxruntime

    from engan.runtime import select

    monkeypatch.setattr(select, "ort_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(select, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.warns(RuntimeWarning, match="ONNX Runtime CUDA could not start .*; using ONNX Runtime CPU"):
        e = Enhancer.load(tiny_onnx)
    assert e.info["device"] == "cpu" and e.info["reason"].startswith(
        f"ONNX Runtime CPU: {tiny_onnx.name} as given (TensorRT not used: ")
    assert f"(ONNX Runtime CUDA not used: {tiny_onnx.name} failed to start (" in e.info["reason"]
    e.close()
    with pytest.raises(Exception, match="could not start CUDAExecutionProvider"):
        Enhancer.load(tiny_onnx, device="cuda")  # asked for CUDA explicitly: no silent CPU


def test_fade_option_gives_well_exposed_photos_back_on_every_backend(tiny_onnx, tiny_checkpoint):
    bright = make_image(40, 56, seed=2, dark=0.95)  # mean luma ~0.5, above the fade's 0.42
    dark = make_image(40, 56, seed=1, dark=0.2)  # ~0.12, below its 0.15
    for model, backend in ((tiny_onnx, "ort"), (tiny_checkpoint, "torch")):
        plain = Enhancer.load(model, backend=backend)
        faded = Enhancer.load(model, backend=backend, fade=prepost.FADE_RANGE)
        assert faded.info["fade"] == [0.15, 0.42] and plain.info["fade"] is None
        np.testing.assert_array_equal(faded.enhance(bright), bright)
        assert not np.array_equal(plain.enhance(bright), bright)
        np.testing.assert_array_equal(faded.enhance(dark), plain.enhance(dark))
        faded.close()
        plain.close()
    with pytest.raises(ValueError, match=r"fade range must satisfy 0 <= lo < hi <= 1 .*got 0.4, 0.1"):
        Enhancer.load("no-such-model.onnx", fade=(0.4, 0.1))  # checked before the model is looked for
