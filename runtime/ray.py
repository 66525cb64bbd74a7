"""Batch enhancement at scale on Ray Data (``pip install 'engan[ray]'``): ``engan-infer``'s job on a cluster.

Ray Data schedules; engan only supplies the stateful map function. The driver plans
the run with ``engan-infer``'s own rules (discovery, output names, refusing to
overwrite inputs or existing files, ``--skip-existing``/``--overwrite``, stale temp
files), builds a dataset of the files to enhance, and runs
``ds.map_batches(EnhanceActor, compute=ActorPoolStrategy(size=N))``. Each actor loads
one :class:`engan.runtime.Enhancer` (any backend; the shipped model or a file every node
can read) and runs ``engan-infer``'s own pipeline stages on its rows: decode, enhance,
and write through engan's encoder (atomic, EXIF, ICC, 16-bit and alpha kept), so an
output is byte-identical to ``engan-infer``'s. Per-file failures come back as rows and
are printed as the same ``FAILED <path>: <reason>`` lines; one bad file never fails the
job. The result is ``engan-infer``'s :class:`~engan.runtime.cli.RunResult` and summary.

Inputs are local paths (files, folders, globs, as ``engan-infer`` takes them) or URIs of
any filesystem pyarrow understands (``s3://bucket/night/``, ``gs://...``, ``file:///...``);
OUTPUT_DIR must be a folder every node can write (a shared filesystem on a cluster).
Videos run without ``--ray``: a video among local inputs is a usage error (URI folders
list images only).

``ray`` is imported only when a job runs.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Iterable, Sequence

import numpy as np

from engan.runtime.cli.console import CliError, Console, first_line, quoted
from engan.runtime.cli.jobs import InferOptions, Job, RunResult
from engan.runtime.cli.pipeline import _Pipeline, load_enhancer
from engan.runtime.cli.planning import Plan, find_inputs, finish_page, plan_run
from engan.runtime.imageio import IMAGE_EXTENSIONS, DecodedImage, DecodeError, read_image
from engan.runtime.imageio.listing import is_image_name, natural_key
from engan.runtime.video.api import is_video

INSTALL = "pip install 'engan[ray]'"
#: Rows per ``map_batches`` call: enough to amortise the task overhead, few enough to balance actors.
DEFAULT_BATCH_SIZE = 8


def import_ray() -> Any:
    """``import ray`` (with Ray Data), or an ImportError naming the extra that installs it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ImportError(f"--ray needs the Python package 'ray[data]' ({e}); install it with: {INSTALL}") from None
    return ray


def is_uri(text: str) -> bool:
    """Whether an input names a pyarrow filesystem URI (``s3://``, ``file://``, ...) rather than a local path."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isidentifier()


# ------------------------------------------------------------------------------- the actor


class _Quiet(Console):
    """An actor prints nothing: its failures and notes travel back in the result rows."""

    def _write(self, line: str) -> None:
        pass


def _filesystem(uri: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri)


def decode_bytes(data: bytes, name: str, max_pixels: int | None) -> DecodedImage:
    """Decode an encoded image with :func:`engan.runtime.imageio.read_image` (same checks and reasons).

    The bytes go through a temp file named like the input, since the decoder reads files.
    """
    fd, tmp = tempfile.mkstemp(prefix=".engan-ray.", suffix=PurePath(name).suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return read_image(tmp, max_pixels)
    finally:
        os.unlink(tmp)


class _ActorPipeline(_Pipeline):
    """``engan-infer``'s pipeline, run inline, decoding from given bytes or a pyarrow URI when there is one."""

    blobs: dict[int, bytes]
    uris: dict[int, str]

    def _decode(self, job: Job) -> DecodedImage:
        data = self.blobs.get(job.index)
        if data is None and job.index in self.uris:
            try:
                fs, path = _filesystem(self.uris[job.index])
                with fs.open_input_file(path) as fh:
                    data = fh.read()
            except (OSError, ValueError) as e:
                raise DecodeError("unreadable", f"unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
        if data is None:
            return super()._decode(job)  # a local file: exactly engan-infer's read
        return decode_bytes(data, job.src.name, self.opts.max_image_pixels or None)


class EnhanceActor:
    """A Ray Data callable class: one :class:`~engan.runtime.Enhancer` per actor, loaded once.

    ``__call__`` takes a batch (dict of columns) with ``src`` (path or name, used in
    messages), ``out`` and ``fmt`` (the output file and its Pillow format, as planned by
    ``engan-infer``), optionally ``index``, ``compare`` (``""`` for none), ``bytes`` (the
    encoded image, e.g. from ``ray.data.read_binary_files``) or ``uri`` (a pyarrow URI to
    read it from); without either the ``src`` file is read. It writes each output and
    returns one row per input: ``index``, ``status`` (``enhanced``/``failed``), ``reason``,
    ``notes`` (newline-joined), ``width``/``height``/``mode`` of the input, ``seconds`` and,
    in an actor's first batch only, ``info`` (the enhancer's info as JSON).

    Args:
        opts: ``engan-infer``'s options (model, backend, threads, output format, ...).
    """

    def __init__(self, opts: InferOptions) -> None:
        self.opts = dataclasses.replace(opts, workers=0, quiet=True, batch=max(1, opts.batch))
        try:
            self.enhancer = load_enhancer(self.opts)
        except CliError as e:  # a ClickException: say it as a plain error inside Ray's traceback
            raise RuntimeError(e.message) from None
        self._info = json.dumps(dict(self.enhancer.info), default=str)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["src"])
        index = batch["index"] if "index" in batch else np.arange(n)
        compare = batch.get("compare", [""] * n)
        jobs = [Job(index=int(index[i]), src=Path(str(batch["src"][i])), out=Path(str(batch["out"][i])),
                    fmt=str(batch["fmt"][i]), compare=Path(str(compare[i])) if compare[i] else None)
                for i in range(n)]
        pipe = _ActorPipeline(self.opts, self.enhancer, _Quiet(True), None)
        pipe.blobs = {j.index: bytes(batch["bytes"][i]) for i, j in enumerate(jobs)} if "bytes" in batch else {}
        pipe.uris = {j.index: str(batch["uri"][i]) for i, j in enumerate(jobs) if batch["uri"][i]} \
            if "uri" in batch else {}
        pipe.run(jobs)
        info, self._info = self._info, ""
        return {
            "index": np.array([j.index for j in jobs], dtype=np.int64),
            "status": np.array([j.status for j in jobs], dtype=object),
            "reason": np.array([j.reason for j in jobs], dtype=object),
            "notes": np.array(["\n".join(j.notes) for j in jobs], dtype=object),
            "width": np.array([j.size[0] if j.size else -1 for j in jobs], dtype=np.int64),
            "height": np.array([j.size[1] if j.size else -1 for j in jobs], dtype=np.int64),
            "mode": np.array([j.mode for j in jobs], dtype=object),
            "seconds": np.array([math.nan if j.seconds is None else j.seconds for j in jobs], dtype=np.float64),
            "info": np.array([info] + [""] * (n - 1), dtype=object),
        }


# ------------------------------------------------------------------------------- the driver


def discover_uris(uris: Iterable[str], recursive: bool = False) -> list[tuple[str, PurePath, str]]:
    """Image files under pyarrow filesystem URIs as (shown path, relative output path, URI), in a stable order.

    A URI naming a file contributes it; one naming a folder its image files (its whole tree with
    ``recursive``, mirrored under OUTPUT_DIR), as ``engan-infer`` does with local folders.
    """
    import pyarrow.fs as pafs

    out: list[tuple[str, PurePath, str]] = []
    for uri in uris:
        try:
            fs, root = _filesystem(uri)
            info = fs.get_file_info(root)
            if info.type == pafs.FileType.File:
                found = [(root, PurePosixPath(info.base_name))]
            elif info.type == pafs.FileType.Directory:
                entries = fs.get_file_info(pafs.FileSelector(root, recursive=recursive))
                found = [(e.path, PurePosixPath(e.path).relative_to(root)) for e in entries
                         if e.type == pafs.FileType.File and is_image_name(e.base_name)
                         and not any(part.startswith(".") for part in PurePosixPath(e.path).relative_to(root).parts)]
            else:
                raise CliError(f"{uri} does not exist")
        except (OSError, ValueError) as e:
            raise CliError(f"cannot list {uri}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        scheme = uri.split("://", 1)[0]
        for path, rel in sorted(found, key=lambda t: natural_key(t[1])):
            # file:// paths are local paths (shown as such); others are "bucket/key" under their scheme
            shown = path if scheme == "file" else f"{scheme}://{path}"
            out.append((shown, rel, f"file://{path}" if scheme == "file" else shown))
    return out


def plan(opts: InferOptions, console: Console, started: float) -> tuple[Plan, dict[int, str]]:
    """Plan the run with ``engan-infer``'s own planner; returns it and {job index: URI} for URI inputs.

    Raises:
        click.ClickException: a usage problem (nothing is processed), as ``engan-infer`` raises it.
    """
    import click

    found = find_inputs(opts, console, [i for i in opts.inputs if not is_uri(i)])
    videos = [p for p, _ in found if is_video(p)]
    if videos:
        raise CliError(f"{len(videos)} video file(s) among the inputs, e.g. {quoted(videos[0])}: videos run "
                       "without --ray; enhance them in a run without --ray, or leave them out of INPUT")
    uri_by_src = {}
    for shown, rel, uri in discover_uris([i for i in opts.inputs if is_uri(i)], opts.recursive):
        found.append((Path(shown), rel))
        uri_by_src[Path(shown)] = uri
    if not found:
        raise click.BadParameter("no image files found in the given inputs "
                                 f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})", param_hint="INPUT")
    runs = plan_run(opts, console, started, found)
    return runs, {j.index: uri_by_src[j.src] for j in runs.jobs if j.src in uri_by_src}


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` or start a local one (``None``/``"local"``); True when we started it."""
    if ray.is_initialized():
        return False
    if address in (None, "", "local"):
        from engan.runtime.backends.base import usable_cpus

        ray.init(num_cpus=usable_cpus(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    else:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except Exception as e:  # unreachable head, wrong port, ray[client] missing: the user's to fix
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CliError(f"could not join the Ray cluster at {address!r}: {first}; check the address (auto on a "
                           "cluster node, ray://HEAD:10001 from outside, HEAD:6379) or run --ray local") from None
    return True


def run_ray(opts: InferOptions, address: str | None = None, *, concurrency: int | None = None,
            batch_size: int = DEFAULT_BATCH_SIZE, shutdown: bool = True) -> RunResult:
    """``engan-infer``'s run on Ray Data: plan here, enhance and write on the actors, report here.

    Args:
        opts: ``engan-infer``'s options (``workers``/``batch`` apply inside each actor).
        address: a Ray cluster (``ray://host:10001``, ``auto``), or None/``"local"`` for a local Ray.
        concurrency: actors (default: the cluster's CPUs / ``opts.threads`` or 1 thread per actor).
        batch_size: rows per ``map_batches`` call.
        shutdown: disconnect from a Ray this call started, when done.

    Returns:
        The :class:`~engan.runtime.cli.RunResult` (``summary``, ``exit_code``), as ``engan-infer`` returns it.
    """
    started, t0 = time.time(), time.perf_counter()
    console = Console(opts.quiet)
    runs, uris = plan(opts, console, started)
    jobs = runs.jobs
    work = [j for j in jobs if j.status == "pending"]
    info: dict = {}
    interrupted = False
    if work and address in (None, "", "local"):  # a model path typo fails here, not inside every actor
        from engan.runtime.enhancer import resolve_model

        try:
            resolve_model(opts.model, opts.backend)
        except (FileNotFoundError, ValueError) as e:
            raise CliError(f"could not load the model: {e}") from None
    if work:
        ray = import_ray()
        ours = _connect(ray, address)
        try:
            threads = opts.threads or 1
            size = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
            table = {"index": [j.index for j in work], "src": [str(j.src) for j in work],
                     "out": [str(j.out) for j in work], "fmt": [j.fmt for j in work],
                     "compare": [str(j.compare) if j.compare else "" for j in work],
                     "uri": [uris.get(j.index, "") for j in work]}
            per_block = max(batch_size, min(256, math.ceil(len(work) / (4 * size))))
            blocks = math.ceil(len(work) / per_block)
            ds = ray.data.from_items([dict(zip(table, row)) for row in zip(*table.values())],
                                     override_num_blocks=blocks)
            actor_opts = dataclasses.replace(opts, threads=threads)
            results = ds.map_batches(EnhanceActor, fn_constructor_kwargs={"opts": actor_opts},
                                     compute=ray.data.ActorPoolStrategy(size=size), batch_size=batch_size,
                                     num_cpus=threads, batch_format="numpy")
            by_index = {j.index: j for j in work}
            for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
                for i in range(len(batch["index"])):
                    if batch["info"][i] and not info:
                        info = json.loads(batch["info"][i])
                        console.info(first_line(info, len(work), len(jobs) - len(work), opts.output_dir)
                                     + f" · Ray: {size} actor(s)")
                    job = by_index[int(batch["index"][i])]
                    _settle(job, batch, i)
                    for note in job.notes:
                        console.warn_once(job.src, note)
                    if job.status == "failed":
                        console.failed(job.src, job.reason)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if ours and shutdown:
                ray.shutdown()
    result = RunResult(jobs=jobs, seconds=time.perf_counter() - t0, interrupted=interrupted, info=info)
    finish_page(opts, runs, result, console)
    return result


def _settle(job: Job, batch: dict[str, np.ndarray], i: int) -> None:
    """Copy an actor's result row into the driver's job."""
    job.status, job.reason = str(batch["status"][i]), str(batch["reason"][i])
    job.notes = [n for n in str(batch["notes"][i]).split("\n") if n]
    w, h = int(batch["width"][i]), int(batch["height"][i])
    job.size = (w, h) if w >= 0 else None
    job.mode = str(batch["mode"][i])
    s = float(batch["seconds"][i])
    job.seconds = None if math.isnan(s) else s


def enhance_paths(inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, *,
                  address: str | None = None, concurrency: int | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE, print_summary: bool = True, **options: Any) -> RunResult:
    """Enhance files, folders, globs or pyarrow URIs into ``output_dir`` on Ray Data.

    >>> enhance_paths(["night/"], "out/", existing="skip")                     # a local Ray
    >>> enhance_paths(["s3://bucket/night/"], "/shared/out", address="auto")   # an existing cluster

    Args:
        inputs, output_dir: as ``engan-infer INPUT... OUTPUT_DIR``.
        address, concurrency, batch_size: see :func:`run_ray`.
        print_summary: print ``N enhanced, M failed, K skipped in T s`` at the end (unless ``quiet``).
        **options: any :class:`~engan.runtime.cli.InferOptions` field (``model``, ``backend``, ``ext``,
            ``suffix``, ``existing`` = ``refuse``/``skip``/``overwrite``, ``threads``, ``quiet``, ...).
    """
    opts = InferOptions(inputs=tuple(os.fspath(i) for i in inputs), output_dir=Path(output_dir), **options)
    result = run_ray(opts, address, concurrency=concurrency, batch_size=batch_size)
    if print_summary and not opts.quiet:
        print(result.summary)
    return result
