"""Planning one ``engan-infer`` run before any file is touched: the inputs it takes, the outputs it
writes, and the ``index.html`` rule. :func:`engan.runtime.cli.pipeline.run` and ``--ray``
(:mod:`engan.runtime.ray`) both plan with it, so their rules cannot drift apart.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Sequence

from engan.runtime.atomic import remove_stale_temp_files
from engan.runtime.cli.console import Console, display_path
from engan.runtime.cli.html import write_run_page
from engan.runtime.cli.jobs import (
    HTML_NAME, InferOptions, Job, RunResult, check_output_dir, discover_inputs, drop_own_outputs, plan_jobs, targets,
)
from engan.runtime.cli.videos import poster_paths, write_posters


@dataclass
class Plan:
    """A run planned by engan-infer's rules before any file is touched (``--ray`` plans with them too).

    Attributes:
        jobs: every input, ``pending`` or already ``failed``/``skipped``.
        page: the ``index.html`` to write (``--html``), else None.
        keep_page: ``--skip-existing`` and that page exists: it stays as it is.
        written: every output file the run may write (its own temp files are cleaned by these).
    """

    jobs: list[Job]
    page: Path | None
    keep_page: bool
    written: list[Path]


def find_inputs(opts: InferOptions, console: Console, inputs: Sequence[str]) -> list[tuple[Path, PurePath]]:
    """Local INPUT arguments as (file, output-relative path); says which symlinks were left out.

    Raises:
        click.ClickException: OUTPUT_DIR is a file, or an argument names nothing (exit 2).
    """
    out_dir = opts.output_dir
    if out_dir.exists() and not out_dir.is_dir():
        check_output_dir(out_dir)  # raises the "is a file" usage error
    outside: list[Path] = []
    found = discover_inputs(inputs, opts.recursive, exclude=out_dir, follow_symlinks=opts.follow_symlinks,
                            outside=outside)
    if outside:
        console.info(f"left out {len(outside)} symlink(s) leading out of their input folder, e.g. "
                     f"{display_path(outside[0])} -> {display_path(os.path.realpath(outside[0]))}; "
                     "pass --follow-symlinks to read them")
    return found


def plan_run(opts: InferOptions, console: Console, started: float, found: list[tuple[Path, PurePath]]) -> Plan:
    """Plan the jobs of ``found``: leave out this run's own outputs, name the outputs (collisions and
    existing files by ``opts.existing``), check OUTPUT_DIR, apply the same rule to ``index.html``,
    remove temp files of dead writers, and print the inputs that already failed.

    Raises:
        click.ClickException: a usage problem, before any file is processed (exit 2).
    """
    out_dir = opts.output_dir
    found, own = drop_own_outputs(found, opts)
    if own:
        console.info(f"left out {len(own)} input(s) that this run writes as outputs, "
                     f"e.g. {display_path(own[0])}")
    jobs = plan_jobs(found, opts)
    check_output_dir(out_dir)
    page = out_dir / HTML_NAME if opts.html else None
    keep_page = page is not None and opts.existing == "skip" and (page.exists() or page.is_symlink())
    written = [t for j in jobs if j.status != "failed" for t in targets(j)]
    posters = [p for j in jobs if page and j.kind == "video" and j.status != "failed" for p in poster_paths(j, out_dir)]
    stale = remove_stale_temp_files(written + posters + ([page] if page else []), started)
    if stale:
        console.info(f"removed {stale} temp file(s) left by an interrupted run")
    for j in jobs:
        if j.status == "failed":
            console.failed(j.src, j.reason)
    return Plan(jobs, page, keep_page, written)


def finish_page(opts: InferOptions, plan: Plan, result: RunResult, console: Console) -> None:
    """Write ``index.html`` (and the video posters) of a finished run, or say why the existing one stays."""
    if plan.keep_page:
        console.info(f"kept the existing {display_path(plan.page)} (--skip-existing); pass --overwrite to replace it")
    elif plan.page is not None:
        write_posters(result.jobs, opts.output_dir, console)
        reason = write_run_page(opts, result, plan.page)
        if reason:
            console.failed(plan.page, reason)
            result.html_failed = True
