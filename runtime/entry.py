"""``engan-infer``'s entry point, and how it stops on SIGINT, SIGTERM and SIGHUP.

Standard library only: the console script imports this module first, so the signal
handlers are in place before numpy, Pillow, click, onnxruntime and the model load.
From then on, a stop signal at any moment ends the run the same clean way:

* during start-up (imports, argument parsing, finding the inputs, loading the model):
  one line on stderr, ``engan-infer: interrupted by SIGINT during start-up; nothing
  was enhanced``;
* while enhancing: no new file is started, the writes under way finish (or are
  removed), this process's temp files are deleted, ``index.html`` is written when asked
  for, and the ``interrupted …`` line and the summary are printed.

The exit code is 128 + the signal number, the shell's convention: 130 for SIGINT,
143 for SIGTERM, 129 for SIGHUP. Further signals while stopping are ignored, so the
clean stop always completes (SIGKILL still ends it at once: outputs stay complete, a
hidden temp file may remain and the next run removes it).
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported at run time: every millisecond before the handlers counts
    from typing import Iterator, Sequence

#: Signals that stop engan-infer cleanly.
STOP_SIGNALS: tuple[int, ...] = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                                      if hasattr(signal, n))


class Interrupted(BaseException):
    """Raised in the main thread when a stop signal arrives.

    A BaseException, so ``except Exception`` handlers let it through; not a
    KeyboardInterrupt, so click does not turn it into ``Aborted!`` with exit code 1.
    """

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)

    @property
    def signame(self) -> str:
        return signal_name(self.signum)


def exit_code(signum: int) -> int:
    """128 + the signal number (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _State:
    installed = False
    stopping = 0  # the first stop signal received, 0 while none
    deferred = 0  # 1: signals are recorded, not raised


_state = _State()


def _handler(signum: int, frame: object) -> None:
    if _state.stopping:  # already stopping: let the clean stop finish
        return
    _state.stopping = signum
    if not _state.deferred:
        raise Interrupted(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Inside, SIGINT/SIGTERM/SIGHUP raise :class:`Interrupted` in the main thread.

    The previous handlers come back on leaving. Nested uses and other threads are
    no-ops (only the main thread may set handlers).
    """
    if _state.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in STOP_SIGNALS}
    _state.installed, _state.stopping, _state.deferred = True, 0, 0
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state.installed, _state.stopping, _state.deferred = False, 0, 0


def defer_stops() -> None:
    """From now until :func:`stop_signals` is left, a stop signal is only recorded (see
    :func:`stop_requested`): for the end of a run, which must finish its page and summary."""
    _state.deferred = 1


def stop_requested() -> int:
    """The first stop signal received since :func:`stop_signals` was entered, 0 when none."""
    return _state.stopping


def raise_if_stopping() -> None:
    """Raise :class:`Interrupted` when a stop signal has arrived (and stops are not deferred).

    For ``except Exception`` handlers: a signal that lands inside a C extension can come
    back as another error (pybind11 turns it into ``ImportError: initialization failed``),
    which must stop the run, not count as a failure. Signals only land in the main
    thread, so elsewhere this does nothing.
    """
    if _state.stopping and not _state.deferred and threading.current_thread() is threading.main_thread():
        raise Interrupted(_state.stopping)


def startup_line(signum: int) -> str:
    return f"engan-infer: interrupted by {signal_name(signum)} during start-up; nothing was enhanced"


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``engan-infer`` with ``argv`` (default ``sys.argv[1:]``) and exit with its code."""
    code = 0
    with stop_signals():
        try:
            code = _run(argv)
        except (Interrupted, KeyboardInterrupt) as e:
            signum = getattr(e, "signum", signal.SIGINT)  # a KeyboardInterrupt raised by code: as SIGINT
            print(startup_line(signum), file=sys.stderr, flush=True)
            code = exit_code(signum)
        except BaseException:
            if not stop_requested():
                raise
            # the signal came back as another error from inside an import or a C call
            print(startup_line(stop_requested()), file=sys.stderr, flush=True)
            code = exit_code(stop_requested())
    sys.exit(code)


def _run(argv: Sequence[str] | None) -> int:
    import click

    from engan.runtime.cli.console import printable
    from engan.runtime.cli.main import main as command

    try:
        rv = command.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="engan-infer",
                          standalone_mode=False)
    except click.ClickException as e:
        raise_if_stopping()  # an error the signal caused is not a usage error
        e.message = printable(e.message)  # option names and values typed by the user, shown inert
        e.show()
        return e.exit_code
    except click.Abort:  # a KeyboardInterrupt click caught (raised by code, not by our handler)
        print(startup_line(signal.SIGINT), file=sys.stderr, flush=True)
        return exit_code(signal.SIGINT)
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    main()
