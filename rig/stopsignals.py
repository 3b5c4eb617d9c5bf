"""SIGTERM and SIGHUP stop the rig as Ctrl-C does.

CI cancelling a job, `timeout`, a closed terminal or `kill PID` send
SIGTERM or SIGHUP, which by default end Python at once: no `finally` runs,
so the guests a run started would be left behind and no report written.
`handle()` turns both into `Stopped`, a KeyboardInterrupt raised in the main
thread, so every path that already handles Ctrl-C (stop the guests, write
the reports with what was obtained) handles them too. The exit code is
128 + the signal's number, as a shell reports a process ended by it: 130
for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The rig was asked to stop by `signum` (SIGTERM, SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signum_of(exc: BaseException) -> int:
    """The signal an interruption came from: SIGINT for a plain KeyboardInterrupt."""
    return exc.signum if isinstance(exc, Stopped) else int(signal.SIGINT)


def name_of(signum: int) -> str:
    return signal.Signals(signum).name


def describe(signum: int) -> str:
    """How the rig says it was stopped: "interrupted" for Ctrl-C, else with the signal."""
    return "interrupted" if signum == signal.SIGINT else f"interrupted by {name_of(signum)}"


def exit_code(signum: int) -> int:
    """As a shell gives for a process ended by `signum`."""
    return 128 + signum


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def handle() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise Stopped in the main thread;
    the previous handlers come back after it. Outside the main thread (where
    Python cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise) for s in HANDLED}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
