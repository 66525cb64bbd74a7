"""What ``engan-infer`` shows: safe text, per-file lines, the first line, ``--verbose`` detail, exit codes.

Every path and message printed goes through :func:`printable`, so control characters in
file names show as escapes and never act on the terminal or forge a line.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

#: Exit codes; a stop signal gives 128 + its number (EXIT_INTERRUPTED for SIGINT, 129 SIGHUP, 143 SIGTERM).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Characters that act on a terminal or a log instead of showing: C0 and C1 controls and DEL
#: (escape sequences, newlines that forge lines), the line and paragraph separators, the
#: bidirectional overrides that reorder text, and lone surrogates (undecodable name bytes).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match) -> str:
    c = m.group()
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
        return f"\\x{code - 0xDC00:02x}"
    return _NAMED.get(c) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\n``, ``\\x1b``, ``\\u202e``).

    What engan-infer prints (console lines, error messages) and writes into HTML goes
    through this, so a file name cannot retitle the terminal, move the cursor or forge a
    ``FAILED`` or summary line. Printable text, non-ASCII letters included, is unchanged.
    """
    return _UNSAFE.sub(_escape, text)


def display_path(path: str | os.PathLike) -> str:
    """A printable form of a path: undecodable bytes of non-UTF-8 names shown as ``\\xNN``,
    control characters as escapes (:func:`printable`)."""
    raw = os.fsencode(path)
    return printable(raw.decode("utf-8", errors="backslashreplace"))


def quoted(path: str | os.PathLike) -> str:
    """``'<path>'`` for messages: :func:`display_path` in quotes (``repr`` would double its escapes)."""
    return f"'{display_path(path)}'"


class CliError(click.ClickException):
    """A problem that stops the run before any file is processed (exit code 2)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))  # library messages may quote paths raw


class Console:
    """Per-file messages on stderr, kept clear of the progress bar; warnings said once."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self._said: set[str] = set()

    def _write(self, line: str) -> None:
        line = printable(line)  # reasons may quote file names: no control character reaches the terminal
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def failed(self, path: Path, reason: str) -> None:
        self._write(f"FAILED {display_path(path)}: {reason}")

    def warn_once(self, path: Path, note: str) -> None:
        if self.quiet or note in self._said:
            return
        self._said.add(note)
        self._write(f"warning: {display_path(path)}: {note} (said once per run)")

    def info(self, line: str) -> None:
        if not self.quiet:
            self._write(line)


# --------------------------------------------------------------------------- the start of a run


def summary_of(info: dict[str, Any]) -> str:
    """``<name> <release> · INT8 · ONNX Runtime CPU``: the enhancer's own summary, or one built from its info."""
    if info.get("summary"):
        return str(info["summary"])
    from engan.runtime.select import backend_label

    model = info.get("label") or info.get("model_name") or (Path(str(info["model"])).stem if info.get("model") else "")
    device = str(info.get("device") or "").upper()
    where = f"{backend_label(str(info.get('backend') or ''))} {'CUDA' if device == 'CUDA:0' else device}".strip()
    return " · ".join(str(p) for p in (model, str(info.get("precision") or "").upper(), where) if p)


def first_line(info: dict[str, Any], n_work: int, n_skip: int, out_dir: Path, n_videos: int = 0) -> str:
    """The line a run starts with: what runs, then how many images (of ``n_work`` files, ``n_videos``
    of them videos) go where (and the fade, when on)."""
    n_images = n_work - n_videos
    counts = ([f"{n_images} image(s)"] if n_images or not n_videos else []) + (
        [f"{n_videos} video(s)"] if n_videos else [])
    line = f"{summary_of(info)} · {' + '.join(counts)} -> {display_path(out_dir)}".lstrip(" ·")
    if n_skip:
        line += f" ({n_skip} already done or failed)"
    if info.get("fade"):
        line += " · fade-bright {:g}-{:g}".format(*info["fade"])
    return line


def _number(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def verbose_lines(info: dict[str, Any]) -> list[str]:
    """``--verbose``: the model file, why this backend ran and why each better one did not, the runtime, tiling."""
    lines: list[str] = []

    def add(key: str, text: str) -> None:
        lines.append(f"  {key:<10}{text}")

    if info.get("model"):
        about = [f"{info['preset']} preset"] if info.get("preset") else []
        if info.get("params"):
            about.append(f"{_number(info['params'])} parameters")
        if info.get("model_version"):
            about.append(f"exported by engan {info['model_version']}")
        add("model", display_path(Path(str(info["model"])).name) + (f" ({', '.join(about)})" if about else ""))
    if info.get("chosen"):
        add("chosen", str(info["chosen"]))
        for label, why in info.get("passed_over") or ():
            add("not used", f"{label}: {why}")
    elif info.get("reason"):
        add("reason", str(info["reason"]))
    runtime = [f"{k} {v}" for k, v in (info.get("versions") or {}).items()]
    if info.get("providers"):
        runtime.append("providers " + ", ".join(info["providers"]))
    if info.get("threads"):
        runtime.append(f"{info['threads']} threads")
    if runtime:
        add("runtime", ", ".join(runtime))
    if info.get("tile"):
        add("tiling", f"{info['tile']}x{info['tile']} tiles, {info.get('overlap', 0)} px overlap")
    elif "max_pixels" in info:
        budget = info.get("max_pixels")
        add("tiling", f"images above {_number(budget)} pixels run as tiles, {info.get('overlap', 0)} px overlap"
            if budget else "off (every image in one model call)")
    return lines
