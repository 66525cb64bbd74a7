"""engan.runtime.ray: engan-infer's job on Ray Data (engan[ray]).

One local Ray (``ray.init(num_cpus=2)``) for the module, shut down at the end. Outputs must
be byte-identical to engan-infer's, failures reported as its FAILED lines, and a rerun
with skip-existing must do nothing.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engan.runtime.cli import console, jobs, pipeline
from engan.runtime._optional import is_installed
from engan.runtime.ray import EnhanceActor, discover_uris, is_uri
from tests.helpers import make_image, paeth_png16, srgb_icc

pytestmark = pytest.mark.skipif(not (is_installed("ray") and is_installed("pyarrow")),
                                reason="ray[data] not installed (pip install 'engan[ray]')")


def _photo_folder(src: Path) -> Path:
    """Photos that exercise the encoder: EXIF, ICC, 16-bit colour, alpha, grey; plus one corrupt file."""
    src.mkdir(parents=True)
    base = Image.fromarray(make_image(24, 40))
    base.save(src / "plain.png")
    Image.fromarray(make_image(32, 48, seed=1)).save(src / "second.jpg", quality=90)
    rot = Image.fromarray(make_image(24, 40, seed=2))
    exif = rot.getexif()
    exif[0x0112] = 6
    rot.save(src / "rotated.jpg", exif=exif.tobytes())
    base.save(src / "icc.png", icc_profile=srgb_icc())
    (src / "rgba16.png").write_bytes(paeth_png16(np.concatenate(
        [np.asarray(base, np.uint16) * 257 + 5, np.full((24, 40, 1), 40000, np.uint16)], axis=-1)))
    base.convert("LA").save(src / "greyalpha.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return src


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _infer(src: Path, out: Path, model: Path, capsys, **kw) -> tuple[jobs.RunResult, list[str]]:
    opts = jobs.InferOptions(inputs=(str(src),), output_dir=out, model=str(model), threads=1, quiet=False, **kw)
    result = pipeline.run(opts)
    return result, [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("FAILED ")]


def test_enhance_paths_matches_engan_infer_byte_for_byte(tmp_path, tiny_onnx, local_ray, capsys) -> None:
    from engan.runtime.ray import enhance_paths

    src = _photo_folder(tmp_path / "in")
    plain, failed_plain = _infer(src, tmp_path / "plain", tiny_onnx, capsys)
    assert plain.summary.startswith("6 enhanced, 1 failed, 0 skipped")

    result = enhance_paths([src], tmp_path / "ray", model=str(tiny_onnx), threads=1, concurrency=2, batch_size=2)
    captured = capsys.readouterr()
    assert result.summary.startswith("6 enhanced, 1 failed, 0 skipped") and result.exit_code == 1
    assert captured.out.strip().splitlines()[-1] == result.summary
    assert [ln for ln in captured.err.splitlines() if ln.startswith("FAILED ")] == failed_plain
    assert any(" · 7 image(s) -> " in ln and ln.endswith(" · Ray: 2 actor(s)")
               for ln in captured.err.splitlines())
    written = sorted(p.name for p in (tmp_path / "ray").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "plain").iterdir()) and len(written) == 6
    for name in written:  # EXIF, ICC, 16-bit and alpha kept exactly as engan-infer keeps them
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name
    assert [(j.src.name, j.status, j.size) for j in result.jobs] == [(j.src.name, j.status, j.size) for j in plain.jobs]

    # engan-infer's overwrite rule, then a rerun with skip-existing does nothing
    with pytest.raises(console.CliError, match="already exist"):
        enhance_paths([src], tmp_path / "ray", model=str(tiny_onnx))
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").iterdir()}
    again = enhance_paths([src], tmp_path / "ray", model=str(tiny_onnx), existing="skip")
    assert again.summary.startswith("0 enhanced, 1 failed, 6 skipped")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").iterdir()} == before


def test_pyarrow_uris_and_encoded_bytes(tmp_path, tiny_onnx, local_ray, capsys) -> None:
    from engan.runtime.ray import enhance_paths

    src = _photo_folder(tmp_path / "in")
    (src / "broken.png").unlink()
    uri = f"file://{src}"
    assert is_uri(uri) and not is_uri(str(src))
    assert [rel.name for _, rel, _ in discover_uris([uri])] == sorted(p.name for p in src.iterdir())
    result = enhance_paths([uri], tmp_path / "ray", model=str(tiny_onnx), threads=1, concurrency=1, quiet=True)
    assert result.summary.startswith("6 enhanced, 0 failed")
    _infer(src, tmp_path / "plain", tiny_onnx, capsys)
    for p in (tmp_path / "plain").iterdir():
        assert (tmp_path / "ray" / p.name).read_bytes() == p.read_bytes(), p.name


def test_actor_on_encoded_bytes_without_a_cluster(tmp_path, tiny_onnx) -> None:
    """The actor as users plug it behind ray.data.read_binary_files: bytes in, outputs written, rows out."""
    src = _photo_folder(tmp_path / "in")
    opts = jobs.InferOptions(inputs=(str(src),), output_dir=tmp_path / "out", model=str(tiny_onnx), threads=1)
    actor = EnhanceActor(opts)
    names = ["icc.png", "broken.png", "rgba16.png"]
    batch = {"src": np.array([f"remote/{n}" for n in names], dtype=object),
             "out": np.array([str(tmp_path / "out" / n) for n in names], dtype=object),
             "fmt": np.array(["PNG"] * 3, dtype=object),
             "bytes": np.array([(src / n).read_bytes() for n in names], dtype=object)}
    rows = actor(batch)
    assert list(rows["status"]) == ["enhanced", "failed", "enhanced"]
    assert rows["reason"][1] and rows["info"][0] and not rows["info"][1]
    assert list(rows["mode"]) == ["RGB", "", "RGBA;16"] and list(rows["width"]) == [40, -1, 40]
    reference = tmp_path / "ref"
    pipeline.run(jobs.InferOptions(inputs=(str(src / "icc.png"), str(src / "rgba16.png")), output_dir=reference,
                             model=str(tiny_onnx), threads=1, quiet=True))
    for n in ("icc.png", "rgba16.png"):
        assert (tmp_path / "out" / n).read_bytes() == (reference / n).read_bytes()
    shutil.rmtree(tmp_path / "out")


def test_a_missing_model_is_a_usage_error_before_ray_starts(tmp_path) -> None:
    from engan.runtime.ray import enhance_paths

    src = _photo_folder(tmp_path / "in")
    with pytest.raises(console.CliError, match=r"could not load the model: .*nope\.onnx"):
        enhance_paths([src], tmp_path / "out", model=str(tmp_path / "nope.onnx"))


def test_an_unreachable_cluster_is_one_usage_error(monkeypatch) -> None:
    import ray

    from engan.runtime import ray as engan_ray

    def refuse(*args, **kwargs):
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify the one to connect to.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(console.CliError) as e:
        engan_ray._connect(ray, "auto")
    assert e.value.message == (
        "could not join the Ray cluster at 'auto': Could not find any running Ray instance.; check the address (auto "
        "on a cluster node, ray://HEAD:10001 from outside, HEAD:6379) or run --ray local")
    assert e.value.exit_code == 2


def test_html_follows_engan_infers_page_rule(tmp_path, tiny_onnx, local_ray, capsys) -> None:
    from engan.runtime.ray import enhance_paths

    src = _photo_folder(tmp_path / "in")
    out = tmp_path / "ray"
    first = enhance_paths([src], out, model=str(tiny_onnx), html=True, quiet=True, print_summary=False)
    page = out / "index.html"
    assert first.exit_code == 1 and page.is_file()  # one input of the folder is broken: its FAILED line
    before = page.stat().st_mtime_ns
    again = enhance_paths([src], out, model=str(tiny_onnx), html=True, existing="skip", print_summary=False)
    assert page.stat().st_mtime_ns == before and again.summary.startswith("0 enhanced")
    assert f"kept the existing {page} (--skip-existing); pass --overwrite to replace it" in capsys.readouterr().err
