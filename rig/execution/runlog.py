"""RUNDIR/run.log: what a run did, in order, with every traceback."""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path

from rig.errors import RigError
from rig.results.run import Problem

RUN_LOG = "run.log"


class RunLog:
    """RUNDIR/run.log: what happened, in order, with every traceback. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock, self.path.open("a") as f:
            f.write("".join(f"{stamp} {line}\n" for line in text.splitlines() or [""]))

    def exception(self, what: str, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(exc)).rstrip()
        self.write(f"{what}:\n{tb}")

    def problem(self, exc: BaseException, where: str, topo: str | None = None) -> Problem:
        """Problem.of the exception, written here (a bug's with its traceback)."""
        if isinstance(exc, RigError):
            self.write(f"{where}: {exc.render()}")
        else:
            self.exception(f"{where}: internal error", exc)
        return Problem.of(exc, where, str(self.path), topo)

