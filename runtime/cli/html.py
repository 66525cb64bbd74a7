"""``engan-infer --html``: the result page (``index.html``). Torch-free.

The page mirrors the result page of the original EnlightenGAN/CycleGAN code (a table
of input next to output) with what a user wants to know besides: the size of each
image, how long it took, the backend that ran it, and why a file failed. A video is
shown by one frame of the input and the same frame of the result (PNG poster frames
that :mod:`engan.runtime.cli.videos` writes), each linking to its video. Every link
is relative to the page, so the output folder can be moved or zipped along with the
inputs it points to. Its text goes through :func:`~engan.runtime.cli.console.printable`
and is HTML-escaped.
"""
from __future__ import annotations

import html
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from engan.runtime.cli.console import display_path, printable
from engan.runtime.imageio import atomic_output, write_error

if TYPE_CHECKING:
    from engan.runtime.cli.jobs import InferOptions, RunResult

#: Extensions browsers display inline; other inputs (TIFF, PPM, ...) get a plain link.
BROWSER_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".webp",
                                ".bmp", ".avif", ".svg"})


def href(target: str | os.PathLike, start: str | os.PathLike) -> str:
    """A relative URL from folder ``start`` to ``target``, percent-encoded byte for byte."""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(start))
    return urllib.parse.quote(os.fsencode(rel).replace(os.sep.encode(), b"/"), safe="/")



@dataclass
class ReportEntry:
    """One input's line on the result page.

    Attributes:
        input_path: the input file.
        output_path: the enhanced file (None when it failed before writing).
        status: ``enhanced``, ``skipped`` (output already there) or ``failed``.
        reason: why it failed (the one-line reason printed on the console).
        compare_path: the before|after image, when ``--compare`` wrote one.
        size: (width, height) of the input, when it was decoded.
        mode: decoded mode (``RGB``, ``I;16``, ``RGBA;16`` ...).
        seconds: inference time for this image (its share of a batch); a video's whole run.
        kind: ``image`` or ``video``.
        posters: a video's (before, after) poster frames, when they were written.
        frames, fps: a video's frame count and rate, when it was enhanced.
    """

    input_path: Path
    output_path: Path | None
    status: str
    reason: str = ""
    compare_path: Path | None = None
    size: tuple[int, int] | None = None
    mode: str = ""
    seconds: float | None = None
    kind: str = "image"
    posters: tuple[Path, Path] | None = None
    frames: int | None = None
    fps: float | None = None


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.4em;margin:0 0 .3em} table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.5em;vertical-align:top;text-align:left}
td.img{width:42%} td.img img{max-width:100%;max-height:70vh;display:block;background:#eee}
.meta{color:#555;font-size:.9em} .failed{color:#b00020} .skipped{color:#8a6d00}
dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:.5em 0 1.5em}
dt{color:#555} dd{margin:0}
"""


def _text(value: Any) -> str:
    """Page text: control characters as escapes, then HTML-escaped (no raw control byte on the page)."""
    return html.escape(printable(str(value)))


def _cell_image(path: Path | None, page_dir: Path, label: str) -> str:
    if path is None:
        return '<td class="img"></td>'
    url = html.escape(href(path, page_dir), quote=True)
    name = html.escape(display_path(path.name))
    if path.suffix.lower() in BROWSER_EXTENSIONS:
        inner = f'<img src="{url}" alt="{label}: {name}" loading="lazy">'
    else:
        inner = f"{label}: {name} (no browser preview for {_text(path.suffix)})"
    return f'<td class="img"><a href="{url}">{inner}</a></td>'


def _cell_video(video: Path | None, poster: Path | None, page_dir: Path, label: str) -> str:
    """A poster frame linking to its video, and the video's name as a link (no poster: the link alone)."""
    if video is None:
        return '<td class="img"></td>'
    url = html.escape(href(video, page_dir), quote=True)
    name = html.escape(display_path(video.name))
    inner = ""
    if poster is not None:
        src = html.escape(href(poster, page_dir), quote=True)
        inner = f'<a href="{url}"><img src="{src}" alt="{label}: {name}" loading="lazy"></a>'
    return f'<td class="img">{inner}<div class="meta">{label} video: <a href="{url}">{name}</a></div></td>'


def _row(e: ReportEntry, page_dir: Path) -> str:
    name = html.escape(display_path(e.input_path.name))
    meta = []
    if e.size:
        meta.append(f"{e.size[0]}&times;{e.size[1]}")
    if e.mode:
        meta.append(_text(e.mode))
    if e.frames is not None:
        meta.append(f"{e.frames} frames" + (f" at {e.fps:.3g} fps" if e.fps else ""))
    if e.seconds is not None:
        meta.append(f"{e.seconds:.1f} s" if e.kind == "video" else f"{e.seconds * 1000:.0f} ms")
    status = f'<div class="{e.status}">{e.status}</div>'
    if e.reason:
        status += f'<div class="failed">{_text(e.reason)}</div>'
    links = ""
    if e.compare_path is not None:
        links = f'<div><a href="{html.escape(href(e.compare_path, page_dir), quote=True)}">before|after</a></div>'
    info = (f'<td><b>{name}</b><div class="meta">{" &middot; ".join(meta)}</div>{status}{links}</td>')
    if e.kind == "video":
        before, after = e.posters or (None, None)
        out = e.output_path if e.status in ("enhanced", "skipped") else None
        return (f"<tr>{info}{_cell_video(e.input_path, before, page_dir, 'input')}"
                f"{_cell_video(out, after, page_dir, 'output')}</tr>")
    out = e.output_path if e.status != "failed" else None
    return f"<tr>{info}{_cell_image(e.input_path, page_dir, 'input')}{_cell_image(out, page_dir, 'output')}</tr>"


def render_index_html(entries: Iterable[ReportEntry], page_dir: str | os.PathLike, *,
                      title: str = "engan-infer results", info: dict[str, Any] | None = None,
                      summary: str = "") -> str:
    """The result page as a string (see :func:`write_index_html`)."""
    page_dir = Path(page_dir)
    rows = "\n".join(_row(e, page_dir) for e in entries)
    details = "".join(f"<dt>{_text(k)}</dt><dd>{_text(v)}</dd>"
                      for k, v in (info or {}).items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_text(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{_text(title)}</h1><p>{_text(summary)}</p><dl>{details}</dl>\n"
        "<table><thead><tr><th>file</th><th>input</th><th>enhanced</th></tr></thead><tbody>\n"
        f"{rows}\n</tbody></table></body></html>\n"
    )


def write_index_html(path: str | os.PathLike, entries: Iterable[ReportEntry], *,
                     title: str = "engan-infer results", info: dict[str, Any] | None = None,
                     summary: str = "") -> Path:
    """Atomically write the result page; links are relative to the page's folder.

    Args:
        path: the page, usually ``OUTPUT_DIR/index.html``.
        entries: one per input, in the order to show them.
        title: page title.
        info: key/value facts shown above the table (backend, model, settings).
        summary: the run's summary line.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    page = render_index_html(entries, path.parent, title=title, info=info, summary=summary)
    with atomic_output(path) as fh:
        fh.write(page.encode("utf-8"))
    return path


#: Enhancer.info keys shown on the page (``model`` as its file name only).
INFO_KEYS = ("model", "backend", "device", "precision", "model_name", "preset", "params",
             "threads", "max_pixels", "tile", "fade", "reason")


def write_run_page(opts: "InferOptions", result: "RunResult", page: Path) -> str:
    """Write the result page of a run; returns why it could not be written ('' when it was)."""
    entries = [ReportEntry(input_path=j.src, output_path=j.out, status=j.status, reason=j.reason,
                           compare_path=j.compare if j.status != "failed" else None,
                           size=j.size, mode=j.mode, seconds=j.seconds, kind=j.kind, posters=j.posters,
                           frames=j.video.frames if j.video else None, fps=j.video.fps if j.video else None)
               for j in result.jobs]
    done_videos = [j.video for j in result.jobs if j.video is not None]
    n_done = result.count("enhanced") - len(done_videos)
    photo_seconds = result.seconds - sum(v.seconds for v in done_videos)
    model = str(result.info.get("model") or "")
    model_dir = os.path.dirname(os.path.abspath(model)) + os.sep if model else ""

    def shown(k: str, v: Any) -> Any:  # the page names the model file, never where it lives
        if k == "model":
            return os.path.basename(model)
        return v.replace(model_dir, "") if isinstance(v, str) and model_dir else v

    info = {k: shown(k, result.info[k]) for k in INFO_KEYS if result.info.get(k) not in (None, "")}
    info.update({
        "output": f"--ext {opts.ext}" + (f", --suffix {opts.suffix}" if opts.suffix else ""),
        "workers / batch": f"{opts.workers} / {opts.batch}",
        "throughput": f"{n_done / photo_seconds:.2f} images/s" if n_done and photo_seconds > 0 else "n/a",
    })
    if any(j.kind == "video" for j in result.jobs):
        frames, seconds = sum(v.frames for v in done_videos), sum(v.seconds for v in done_videos)
        info["video"] = f"--video-ext {opts.video_ext}, --crf {opts.crf}, --preset {opts.preset}"
        info["video throughput"] = f"{frames / seconds:.2f} frames/s" if frames and seconds else "n/a"
    try:
        write_index_html(page, entries, info=info, summary=result.summary)
    except OSError as e:
        return write_error(page, e)
    return ""
