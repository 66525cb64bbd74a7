"""Result page and before|after images (engan.runtime.cli.html, engan.runtime.imageio.encode)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engan.runtime.cli.console import display_path
from engan.runtime.cli.html import ReportEntry, href, render_index_html, write_index_html
from engan.runtime.imageio import compare_image
from tests.helpers import make_image, parse_links, resolve


def test_compare_image_is_twice_as_wide_and_keeps_both_halves():
    a = Image.fromarray(make_image(20, 30))
    b = Image.fromarray(make_image(20, 30, seed=1, dark=0.9))
    c = compare_image(a, b)
    assert c.size == (60, 20) and c.mode == "RGB"
    arr = np.asarray(c)
    assert np.array_equal(arr[:, :30], np.asarray(a)) and np.array_equal(arr[:, 30:], np.asarray(b))


def test_compare_image_modes():
    grey = Image.fromarray(make_image(8, 8)).convert("L")
    assert compare_image(grey, grey).mode == "L"
    rgba = Image.fromarray(make_image(8, 8)).convert("RGBA")
    assert compare_image(rgba, rgba).mode == "RGBA"
    wide = np.full((8, 8, 3), 65535, np.uint16)
    c = compare_image(wide, wide)
    assert c.mode == "RGB" and c.size == (16, 8) and np.asarray(c).min() == 255
    with pytest.raises(ValueError, match=r"equal sizes, got \(8, 8\) and \(9, 8\)"):
        compare_image(grey, Image.new("L", (9, 8)))


def test_href_is_relative_and_percent_encoded(tmp_path):
    page = tmp_path / "out"
    assert href(tmp_path / "in" / "a b#1.png", page) == "../in/a%20b%231.png"
    raw = os.fsdecode(b"caf\xe9.png")  # Latin-1 byte: not UTF-8
    assert href(page / raw, page) == "caf%E9.png"
    assert display_path(raw) == "caf\\xe9.png"


def test_index_lists_every_entry_with_resolvable_links(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    out.mkdir()
    names = ["one.png", "two words.jpg", os.fsdecode(b"\xff\xfe odd.png"), "sub/deep.png"]
    entries = []
    for i, name in enumerate(names):
        Image.fromarray(make_image(8, 8, seed=i)).save(src / name, format="PNG")
        o = out / Path(name).with_suffix(".png")
        o.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_image(8, 8, seed=i)).save(o)
        entries.append(ReportEntry(src / name, o, "enhanced", size=(8, 8), mode="RGB", seconds=0.0123))
    entries.append(ReportEntry(src / "bad.jpg", None, "failed", reason="not an image (it is a text file)"))
    page = write_index_html(out / "index.html", entries, info={"backend": "ort"}, summary="4 enhanced, 1 failed, 0 skipped in 0.1 s")
    text = page.read_text("utf-8")
    links = parse_links(text)
    assert links.rows == 1 + len(entries)  # header + one row each
    assert len(links.srcs) == 2 * len(names) + 1  # input+output for the good ones, input only for the failed
    for url in links.srcs + links.hrefs:
        target = resolve(url, out)
        if "bad.jpg" not in url:
            assert target.is_file(), url
    assert "8&times;8" in text and "12 ms" in text and "not an image (it is a text file)" in text
    assert "<dt>backend</dt><dd>ort</dd>" in text and "4 enhanced, 1 failed, 0 skipped in 0.1 s" in text
    assert "\\xff\\xfe odd.png" in text  # undecodable bytes shown, not crashing


def test_index_escapes_html_in_names_and_reasons(tmp_path):
    e = ReportEntry(tmp_path / "<script>.png", None, "failed", reason="<b>bad</b>")
    text = render_index_html([e], tmp_path)
    assert "<script>" not in text and "&lt;script&gt;.png" in text and "&lt;b&gt;bad&lt;/b&gt;" in text


def test_non_browser_formats_get_a_link_not_an_img(tmp_path):
    e = ReportEntry(tmp_path / "scan.tif", tmp_path / "scan.png", "enhanced")
    links = parse_links(render_index_html([e], tmp_path))
    assert links.srcs == ["scan.png"] and "scan.tif" in links.hrefs
