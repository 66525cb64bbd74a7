"""pytest wiring of the benchmark suite: options, the session-wide results collector, the report.

``pytest benchmarks`` (full) or ``pytest benchmarks --quick`` (CI). See
:mod:`benchmarks.settings` for every option. At the end of the session the rows are
written to ``<out>/latest.{json,md,png}`` (quick mode: ``quick.*``) and the table is
printed in the terminal summary (no ``-s`` needed).
"""
from __future__ import annotations

import pytest

from benchmarks.session import SESSION_KEY as _SESSION
from benchmarks.session import SETTINGS_KEY as _SETTINGS
from benchmarks.session import BenchSession, settings_of
from benchmarks.settings import settings_from_options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("engan benchmarks")
    group.addoption("--quick", action="store_true", default=False,
                    help="CI mode: tiny preset, 256x256 and 400x608 (HxW), 3 rounds; asserts parity only "
                         "(default: full mode, lite and paper presets at four sizes)")
    group.addoption("--bench-presets", default=None, metavar="LIST",
                    help="comma list of generator presets (default: tiny in --quick, else lite,paper; "
                         "with --bench-weights: the weights' preset)")
    group.addoption("--bench-sizes", default=None, metavar="LIST",
                    help="comma list of HxW sizes, height first, multiples of 16 "
                         "(default: 256x256,400x608 in --quick, else 256x256,400x608,720x1280,1088x1920)")
    group.addoption("--bench-rounds", type=int, default=None, metavar="N",
                    help="interleaved timing rounds per size (default: 3 in --quick, else as many as fit "
                         "~90 s per size, between 3 and 15)")
    group.addoption("--bench-threads", type=int, default=None, metavar="N",
                    help="CPU threads for every backend (default: the cores this process may use; 1 in --quick)")
    group.addoption("--bench-weights", default=None, metavar="PATH",
                    help="generator .safetensors or run folder to benchmark (default: the shipped model "
                         "when its preset matches, else a seeded random generator)")
    group.addoption("--bench-calib-images", type=int, default=None, metavar="N",
                    help="INT8 calibration images (default: 4 in --quick, else 32 like `engan export --int8`)")
    group.addoption("--bench-out", default=None, metavar="DIR",
                    help="folder for the result files (default: benchmarks/results)")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config.option, "quick"):
        return
    presets = config.getoption("--bench-presets")
    weights = config.getoption("--bench-weights")
    if weights and not presets:
        from benchmarks.models import weights_preset

        presets = weights_preset(weights)
    config.stash[_SETTINGS] = settings_from_options(
        quick=config.getoption("--quick"), presets=presets, sizes=config.getoption("--bench-sizes"),
        rounds=config.getoption("--bench-rounds"), threads=config.getoption("--bench-threads"),
        weights=weights, out_dir=config.getoption("--bench-out"),
        calib_images=config.getoption("--bench-calib-images"),
    )


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest) -> BenchSession:
    """The session-wide :class:`BenchSession` (models, measurements, collected rows)."""
    config = request.config
    if _SESSION not in config.stash:
        config.stash[_SESSION] = BenchSession(settings_of(config))
    return config.stash[_SESSION]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is None or not (session.rows or session.skipped):
        return
    from benchmarks.machine import load_average
    from benchmarks.report import write_results

    st = session.settings
    machine = dict(session.machine)
    machine["load_average_end"] = load_average()
    settings = {"mode": st.mode, "presets": list(st.presets), "sizes": [f"{h}x{w}" for h, w in st.sizes],
                "rounds": st.rounds or "adaptive", "threads": st.threads, "weights": st.weights,
                "calib_images": st.calib_images}
    md, paths = write_results(session.rows, session.skipped, machine, settings, st.out_dir, st.result_stem,
                              session.notes)
    terminalreporter.section("engan benchmark results")
    terminalreporter.write_line(md)
    terminalreporter.write_line("written: " + ", ".join(str(p) for p in paths))
    session.close()
