"""``engan-infer INPUT... OUTPUT_DIR``: enhance photos (and videos) with an exported EnlightenGAN model.

Torch-free (stdlib, numpy, Pillow, click, tqdm; the backend library is imported by
:class:`engan.runtime.enhancer.Enhancer` only when the model is loaded). The console
script is :func:`engan.runtime.entry.main`, which sets the signal handlers first and then
runs :func:`engan.runtime.cli.main.main`. The package, by job:

* :mod:`~engan.runtime.cli.main`: the options;
* :mod:`~engan.runtime.cli.jobs`: finding the inputs and planning the outputs;
* :mod:`~engan.runtime.cli.planning`: one run's plan (inputs, outputs, the page rule), shared with ``--ray``;
* :mod:`~engan.runtime.cli.pipeline`: the decode / enhance / encode threads and :func:`run`;
* :mod:`~engan.runtime.cli.videos`: video files, after the photos (PyAV only when one is an input);
* :mod:`~engan.runtime.cli.html`: the ``--html`` result page;
* :mod:`~engan.runtime.cli.console`: what is printed (the first line, ``--verbose``,
  per-file lines) and the exit codes.

Behaviour on bad input: a file that cannot be read, decoded, enhanced or written prints
one ``FAILED <path>: <reason>`` line and the run goes on; the exit code is 1 when any
file (``index.html`` included) failed, 2 for usage errors (bad options, an OUTPUT_DIR that
is a file or cannot be written, outputs that would overwrite inputs or existing files, a
model that does not load, video inputs without PyAV or with ``--ray``), 128 + the signal
number when stopped by SIGINT (130), SIGHUP (129) or SIGTERM (143) (see
:mod:`engan.runtime.entry`), 0 otherwise. Every path printed
is passed through :func:`engan.runtime.cli.console.printable`, so control characters in
file names show as escapes and never act on the terminal or forge a line.

Outputs are written atomically (temp file + rename): under OUTPUT_DIR a file is either
complete or absent, even after ``kill -9`` (only a hidden ``.<name>.<pid>.<random>.tmp``
can remain then; the next run that writes ``<name>`` deletes it once its writer is gone,
so ``--skip-existing`` resumes into a clean folder, and two runs on one folder never
delete each other's files in progress).
"""
