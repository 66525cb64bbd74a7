"""Which files are images, and finding them in folders: the one listing every part of engan uses.

``engan-infer`` walks its input folders with :func:`walk_images`; training, INT8
calibration, evaluation and the benchmarks list theirs with :func:`list_images`. Both
take the same suffixes (:data:`IMAGE_EXTENSIONS`), skip hidden files and folders, and
sort names naturally (``2.png`` before ``10.png``). Torch-free, standard library only
(Pillow is asked once whether it reads AVIF).
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePath

#: Output formats :func:`engan.runtime.imageio.write_image` can write, by lower-case file extension.
EXT_TO_FORMAT = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG",
    ".webp": "WEBP", ".bmp": "BMP", ".dib": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
}


def _pillow_reads_avif() -> bool:
    try:
        from PIL import features

        return bool(features.check_module("avif"))
    except Exception:  # noqa: BLE001 - an odd Pillow build: treat as absent
        return False


#: Extensions picked up when listing a folder (files given by name are always tried):
#: every format this Pillow decodes that photos come in, so a folder walk takes the files
#: that naming them would (AVIF where Pillow was built with it). Lower case, the writable
#: formats first.
IMAGE_EXTENSIONS: tuple[str, ...] = (*EXT_TO_FORMAT, ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".mpo",
                                     *((".avif",) if _pillow_reads_avif() else ()))


def is_image_name(name: str, also: tuple[str, ...] | frozenset[str] = ()) -> bool:
    """Whether a folder listing takes a file of this name: an image suffix (or one of ``also``), not hidden."""
    if name.startswith("."):
        return False
    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_EXTENSIONS or suffix in also


def natural_key(rel: str | os.PathLike) -> list:
    """Sort key that puts ``2.png`` before ``10.png`` (case-insensitive otherwise)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(rel))]


def is_inside(real: str, root: str) -> bool:
    """Whether the real path ``real`` is ``root`` or lies under it."""
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def walk_images(folder: Path, recursive: bool = False, exclude: set[str] | frozenset[str] = frozenset(),
                follow_symlinks: bool = False, outside: list[Path] | None = None,
                also: tuple[str, ...] | frozenset[str] = ()) -> list[tuple[Path, PurePath]]:
    """Image files of a folder as (path, path relative to the folder), in listing order.

    Hidden files and folders are skipped, and so are the real paths in ``exclude`` (an
    output folder). ``also`` adds lower-case suffixes to take besides the image ones
    (``engan-infer`` adds :data:`engan.runtime.video.api.VIDEO_EXTENSIONS`). A symlink,
    to a file or a folder, is followed only when its target lies inside the folder's own
    tree, unless ``follow_symlinks``: one leading out of it (to ``/etc``, another disk, a
    home folder) is left out and added to ``outside``. A folder whose real path was
    already visited (a symlink loop, or two links to one place) is not entered again.

    Raises:
        OSError: a folder that cannot be listed (permissions), with its ``filename``;
            never silently left out.
    """
    found: list[tuple[Path, PurePath]] = []
    root = os.path.realpath(folder)

    def stays_inside(p: str | os.PathLike) -> bool:
        if follow_symlinks or not os.path.islink(p) or is_inside(os.path.realpath(p), root):
            return True
        if outside is not None:
            outside.append(Path(p))
        return False

    if not recursive:
        for name in os.listdir(folder):
            p = folder / name
            if is_image_name(name, also) and not p.is_dir() and stays_inside(p):
                found.append((p, PurePath(name)))
        return found
    visited = {root}

    def walk_error(e: OSError) -> None:  # os.walk would otherwise skip the folder without a word
        if e.filename is None:
            e.filename = str(folder)
        raise e

    for root_dir, dirs, files in os.walk(folder, followlinks=True, onerror=walk_error):
        keep = []
        for d in sorted(dirs, key=lambda d: (os.path.islink(os.path.join(root_dir, d)), d)):  # real folders first
            path = os.path.join(root_dir, d)
            real = os.path.realpath(path)
            if d.startswith(".") or real in visited or real in exclude or not stays_inside(path):
                continue
            visited.add(real)
            keep.append(d)
        dirs[:] = keep
        for name in files:
            if is_image_name(name, also):
                p = Path(root_dir, name)
                if stays_inside(p):
                    found.append((p, PurePath(os.path.relpath(p, folder))))
    return found


def list_images(folder: str | os.PathLike, recursive: bool = False, follow_symlinks: bool = True) -> list[Path]:
    """Image files of ``folder`` (its whole tree with ``recursive``), sorted naturally.

    Args:
        folder: the folder.
        recursive: also list sub-folders (hidden ones are skipped).
        follow_symlinks: also take symlinks that lead out of the folder (``engan-infer``
            leaves them out unless ``--follow-symlinks``).

    Raises:
        FileNotFoundError / NotADirectoryError: ``folder`` is missing or a file.
        OSError: a folder that cannot be listed.
    """
    root = Path(folder)
    if not root.is_dir():
        kind = NotADirectoryError if root.exists() else FileNotFoundError
        raise kind(f"image folder not found: {root}" if kind is FileNotFoundError else f"{root} is not a folder")
    found = walk_images(root, recursive, follow_symlinks=follow_symlinks)
    return [p for p, _ in sorted(found, key=lambda t: natural_key(t[1]))]
