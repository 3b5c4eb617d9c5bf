"""Progress lines for long work: the stage, how far, and the time taken."""

from __future__ import annotations

import re
import sys
import threading
import time
from typing import TextIO

NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")
# Kbuild prints one "  CC      path" style line per step.
KBUILD_STEP = re.compile(r"^  [A-Z][A-Z0-9_\[\]-]*\s+\S")


class Progress:
    """Writes one line per update to a stream.

    On a terminal the line is rewritten in place; elsewhere (CI logs) a line
    is printed at most every `interval` seconds so logs stay short. Guest
    threads call it too: every method holds a lock, so lines never interleave.
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval
        self.stage = ""
        self.started = time.monotonic()
        self.stage_started = self.started
        self._last_print = 0.0
        self._open_line = False
        self._lock = threading.Lock()

    def begin(self, stage: str) -> None:
        with self._lock:
            self._close_line()
            self.stage = stage
            self.stage_started = time.monotonic()
            self._last_print = 0.0
            self._write(f"[{self._elapsed(self.started)}] {stage}", final=True)

    def step(self, done: int, total: int | None, what: str = "") -> None:
        with self._lock:
            now = time.monotonic()
            if not self.tty and now - self._last_print < self.interval and done != total:
                return
            self._last_print = now
            frac = f"{done}/{total}" if total else f"{done}/?"
            pct = f" {100 * done // total:3d}%" if total else ""
            tail = f" {what}" if what else ""
            line = f"  {self.stage}: step {frac}{pct} {self._elapsed(self.stage_started)}{tail}"
            self._write(line[:160], final=not self.tty)

    def done(self, summary: str) -> None:
        with self._lock:
            self._close_line()
            self._write(f"  {self.stage}: {summary} ({self._elapsed(self.stage_started)})",
                        final=True)

    def note(self, text: str) -> None:
        with self._lock:
            self._close_line()
            self._write(f"  {text}", final=True)

    @staticmethod
    def _elapsed(since: float) -> str:
        secs = time.monotonic() - since
        return f"{int(secs // 60)}m{secs % 60:04.1f}s" if secs >= 60 else f"{secs:.1f}s"

    def _write(self, line: str, final: bool) -> None:
        if self.tty and not final:
            self.stream.write("\r\033[K" + line)
            self._open_line = True
        else:
            self._close_line()
            self.stream.write(line + "\n")
        self.stream.flush()

    def _close_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False


def ninja_step(line: str) -> tuple[int, int] | None:
    m = NINJA_STEP.match(line)
    return (int(m.group(1)), int(m.group(2))) if m else None


def kbuild_step(line: str) -> bool:
    return bool(KBUILD_STEP.match(line))
