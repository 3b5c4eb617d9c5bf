"""The options every rig command takes: -v/--verbose and --version.

`-v` (before or right after the command's name) turns on the debug log on
stderr: QMP traffic both ways (qemu.qmp, rig.guest.qmp), SSH commands with
their exit codes and output sizes (rig.guest.ssh) and QEMU's start and end
(rig.guest.qemu).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
from collections.abc import Sequence
from typing import Any

DIST = "tphlab-rig"
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(threadName)s %(name)s: %(message)s"
VERBOSE_HELP = ("debug log on stderr: QMP commands and replies, SSH commands with their "
                "exit codes and output sizes, QEMU's start and stop")
# Libraries whose DEBUG lines say nothing about the bench.
QUIET = ("asyncio", "paramiko")


def version() -> str:
    """tphlab-rig's installed version, "unknown" when it is not installed."""
    try:
        return importlib.metadata.version(DIST)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is when a record comes."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def setup_logging() -> None:
    """The root logger at DEBUG on stderr (once)."""
    root = logging.getLogger()
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.INFO)


class Verbose(argparse.Action):
    """-v: sets `verbose` and turns the debug log on as it is parsed."""

    def __init__(self, option_strings: Sequence[str], dest: str, default: Any = False,
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True)
        setup_logging()


def add(p: argparse.ArgumentParser,
        sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """-v and --version on `p`; -v also on each command of `sub` (`rig run -v`)."""
    p.add_argument("-v", "--verbose", action=Verbose, help=VERBOSE_HELP)
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    for cmd in sub.choices.values():
        if any("-v" in a.option_strings for a in cmd._actions):
            continue   # an alias already done, or a command with a -v of its own
        # SUPPRESS: a command without -v leaves the global one's value alone.
        cmd.add_argument("-v", "--verbose", action=Verbose, default=argparse.SUPPRESS,
                         help=VERBOSE_HELP)
