"""One contract: pad, crop, luma, PSNR, uint8 rounding, image listing, sha256 and the model-source
resolver each exist once, in the torch-free runtime, and everything else imports them."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tests.helpers import REPO

#: Where engan's Python lives: the package, export, runtime, benchmarks, scripts and these tests.
SOURCE_DIRS = ("engan", "export", "runtime", "benchmarks", "scripts", "tests")

#: definition pattern -> (the one module that defines it, torch twins allowed beside it).
ONCE = {
    r"def psnr\(": ("runtime/parity.py", ()),
    r"def luma\(": ("runtime/prepost/pixels.py", ("engan/models/generator.py",)),  # the tensor op inside the graph
    r"LUMA_WEIGHTS(\s*:[^=\n]*)?\s*=": ("runtime/prepost/pixels.py", ()),
    r"def to_uint8\(": ("runtime/prepost/pixels.py", ()),
    r"def uint16_to_uint8\(": ("runtime/prepost/pixels.py", ()),
    r"def list_images\(": ("runtime/imageio/listing.py", ()),
    r"IMAGE_(EXTENSIONS|SUFFIXES)(\s*:[^=\n]*)?\s*=": ("runtime/imageio/listing.py", ()),
    r"def pad_amounts\(": ("runtime/prepost/pixels.py", ()),
    r"def crop_padding\(": ("runtime/prepost/pixels.py", ()),
    r"def file_sha256\(": ("runtime/meta.py", ()),
    r"def resolve_model_source\(": ("runtime/resolve.py", ()),
}


def _definitions(pattern: str) -> list[str]:
    regex = re.compile(rf"^\s*{pattern}", re.MULTILINE)
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            if regex.search(path.read_text(encoding="utf-8")):
                found.append(path.relative_to(REPO).as_posix())
    return found


@pytest.mark.parametrize("pattern", sorted(ONCE))
def test_each_contract_is_defined_once(pattern):
    home, twins = ONCE[pattern]
    assert sorted(_definitions(pattern)) == sorted([home, *twins])


def test_no_hand_written_psnr_or_sha256_outside_the_runtime():
    """PSNR's formula (log10) and hashing live in runtime/parity.py and runtime/meta.py only."""
    for needle, home in (("log10(", "runtime/parity.py"), ("hashlib", "runtime/meta.py")):
        users = []
        for folder in SOURCE_DIRS[:-1]:  # tests may compute expected values by hand
            for path in sorted((REPO / folder).rglob("*.py")):
                if needle in path.read_text(encoding="utf-8"):
                    users.append(path.relative_to(REPO).as_posix())
        assert users == [home], needle


def test_the_other_places_use_the_runtimes_objects():
    """Training, eval, export and the torch model reach the runtime's functions, not copies."""
    from engan.data import images as data_images
    from engan.eval import datasets, metrics
    from engan.models import checkpoint, generator, padding
    from engan.runtime import meta, parity, prepost
    from engan.runtime.imageio import listing

    assert generator.LUMA_WEIGHTS is prepost.LUMA_WEIGHTS
    assert padding.pad_amounts is prepost.pad_amounts and padding.crop_padding is prepost.crop_padding
    assert checkpoint.file_sha256 is meta.file_sha256
    assert metrics.psnr is parity.psnr and metrics.luma is prepost.luma
    assert datasets.list_images is listing.list_images
    assert data_images._list_folder is listing.list_images


def test_torch_padding_takes_the_runtimes_amounts_and_mode():
    torch = pytest.importorskip("torch")
    from engan.models.padding import pad_to_multiple
    from engan.runtime import prepost

    for h, w in ((1, 1), (17, 33), (15, 16), (40, 56), (3, 200)):
        x = np.random.default_rng(h * w).random((1, 3, h, w)).astype(np.float32)
        xt, pads_t = pad_to_multiple(torch.from_numpy(x))
        xn, pads_n = prepost.pad_to_multiple(x)
        assert pads_t == pads_n == prepost.pad_amounts(h, w)
        np.testing.assert_array_equal(xt.numpy(), xn)
        np.testing.assert_array_equal(prepost.crop_padding(xt, pads_t).numpy(), x)


def test_uint16_to_uint8_equals_every_rounding_it_replaced():
    from engan.runtime.prepost import uint16_to_uint8

    a = np.arange(65536, dtype=np.uint16)
    ref = uint16_to_uint8(a)
    np.testing.assert_array_equal(ref, ((a.astype(np.uint32) + 128) // 257).astype(np.uint8))  # engan-infer's
    np.testing.assert_array_equal(ref, np.clip(a / 257.0, 0, 255).round().astype(np.uint8))  # training's
    np.testing.assert_array_equal(ref, np.rint(a / 65535.0 * 255.0).astype(np.uint8))  # eval's


def test_float64_luma_is_the_metrics_and_float32_luma_the_runtimes():
    from engan.runtime.prepost import LUMA_WEIGHTS, luma

    img = np.random.default_rng(0).integers(0, 256, (31, 47, 3), dtype=np.uint8)
    np.testing.assert_array_equal(luma(img, np.float64), img.astype(np.float64) @ np.array(LUMA_WEIGHTS))
    f = img.astype(np.float32) / np.float32(255)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    np.testing.assert_array_equal(luma(f), LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b)
    assert luma(f).dtype == np.float32 and luma(img[..., 0], np.float64).shape == (31, 47)


def test_list_images_is_natural_non_recursive_by_default_and_skips_hidden(tmp_path):
    from engan.runtime.imageio.listing import list_images

    for rel in ("10.png", "9.JPG", "a.webp", ".hidden.png", "notes.txt", "sub/1.png", ".cache/2.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["9.JPG", "10.png", "a.webp"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "9.JPG", "10.png", "a.webp", "sub/1.png"]
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        list_images(tmp_path / "nope")
