"""Atomic file writes (temp file in the same folder + fsync + rename). Torch-free.

A reader, or a process killed mid-write, never sees a half-written file under the
final name: either the old file or the complete new one.

The temp file is ``.<name>.<pid>.<random>.tmp`` beside ``<name>``: the writer's process
id in the name lets a later run tell a temp file whose writer was killed (safe to
delete) from one another live process is still writing (never touched):
:func:`remove_stale_temp_files`.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Iterable, Iterator

TEMP_SUFFIX = ".tmp"


def temp_prefix(path: str | os.PathLike) -> str:
    """The start of this process's temp file names for ``path``: ``.<name>.<pid>.``."""
    return f".{Path(path).name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to ``path``; on clean exit fsync and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        # mkstemp creates 0600; give the final file the usual umask permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


# --------------------------------------------------------------------------- stale temp files


def temp_owners(name: str) -> list[tuple[str, int | None]]:
    """The (final name, writer pid) pairs a temp file name can stand for.

    ``.a.png.4242.k3j2h1g0.tmp`` -> ``[("a.png", 4242), ("a.png.4242", None)]``; the
    second reading is the older pid-less form ``.<name>.<random>.tmp``. Empty for names
    that are not temp files.
    """
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return []
    body = name[1:-len(TEMP_SUFFIX)]
    out: list[tuple[str, int | None]] = []
    parts = body.rsplit(".", 2)
    if len(parts) == 3 and parts[0] and parts[1].isdigit() and parts[2]:
        out.append((parts[0], int(parts[1])))
    parts = body.rsplit(".", 1)
    if len(parts) == 2 and parts[0] and parts[1]:
        out.append((parts[0], None))
    return out


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, about 10 ms resolution), or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, after "pid (comm) "
        boot = _boot_time()
        return None if boot is None else boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # unknown: assume alive, so nothing is deleted
    return True


#: Clock slack when comparing a file's mtime with a process start time (/proc's btime is whole seconds).
_CLOCK_SLACK = 2.0


def temp_is_dead(pid: int | None, mtime: float, started: float) -> bool:
    """Whether a temp file can be deleted: provably no live process is writing it.

    With a writer pid: the process is gone, or the pid now belongs to a process that
    started after the file was last written (a reused pid). Without one (the older
    name form): the file was last written before ``started``, the start of this run.
    """
    if pid is None:
        return mtime < started
    if pid == os.getpid():
        return mtime < started
    if not pid_alive(pid):
        return True
    start = process_start_time(pid)
    return start is not None and start > mtime + _CLOCK_SLACK


def remove_stale_temp_files(targets: Iterable[str | os.PathLike], started: float | None = None) -> int:
    """Delete the temp files killed writers left beside ``targets``; returns how many.

    Each folder is listed once, however many targets it holds, so this stays linear in
    the number of files. Only temp files of these final names are considered, and of
    those only the ones :func:`temp_is_dead` clears: a temp file another live run is
    writing is left alone.

    Args:
        targets: the final files this run will write.
        started: when this run started (``time.time()``); default now.
    """
    started = time.time() if started is None else started
    by_folder: dict[str, set[str]] = {}
    for t in targets:
        folder, name = os.path.split(os.fspath(t))
        by_folder.setdefault(folder or ".", set()).add(name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            owner = next(((n, pid) for n, pid in temp_owners(entry.name) if n in names), None)
            if owner is None:
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if temp_is_dead(owner[1], entry.stat(follow_symlinks=False).st_mtime, started):
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                pass
    return removed


def remove_own_temp_files(folders: Iterable[str | os.PathLike]) -> int:
    """Delete this process's temp files in ``folders`` (each listed once); returns how many.

    For a clean stop on a signal, once no write is running: a temp file whose write was
    cut short before :func:`atomic_open` could clean up after it (the signal came between
    ``mkstemp`` and the ``try``) is found by the pid in its name.
    """
    removed = 0
    pid = os.getpid()
    for folder in dict.fromkeys(os.fspath(f) for f in folders):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if any(p == pid for _, p in temp_owners(entry.name)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed
