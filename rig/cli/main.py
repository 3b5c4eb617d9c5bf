"""The `rig` command line: the parser, and exit codes.

Exit codes: 0 all passed, 1 a scenario failed, 2 a set-up error (with the
fix), 3 a guest died or hung, 4 an internal error of the rig (its
traceback in the log), 128 + the signal's number when a signal stopped it
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP: see rig.stopsignals; 141 when the
reader of its output went away, as `rig report RUN | head` does).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence

from rig import stopsignals
from rig.cli import bench, build, fuzz, globalopts, guest, report, run
from rig.errors import RigError
from rig.paths import cache_root
from rig.results.run import Problem


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rig", description="tphlab: build, boot and check the "
                                "TPH dma-buf bench")
    sub = p.add_subparsers(dest="command", required=True)
    build.add_parsers(sub)
    report.add_parsers(sub)
    run.add_parsers(sub)
    guest.add_parsers(sub)
    bench.add_parsers(sub)
    fuzz.add_parsers(sub)
    globalopts.add(p, sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with stopsignals.handle():
            return int(args.func(args))
    except RigError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader of stdout went away (`rig report RUN | head`): stop quietly,
        # as other commands do; the interpreter's last flush goes to /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt as exc:
        signum = stopsignals.signum_of(exc)
        print(stopsignals.describe(signum), file=sys.stderr)
        return stopsignals.exit_code(signum)
    except Exception as exc:
        return internal_error(exc, bool(getattr(args, "verbose", False)))


def internal_error(exc: Exception, verbose: bool = False) -> int:
    """A bug of the rig (Problem.of): one line on stderr, the traceback in a log
    file; exit 4."""
    tb = "".join(traceback.format_exception(exc))
    try:
        logs = cache_root() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"internal-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(tb)
        where = f"  log: {path} (the traceback)"
    except OSError:
        where, verbose = "  (the log could not be written; the traceback follows)", True
    problem = Problem.of(exc, log=where)
    what = problem.message.removeprefix("internal error: ")
    print(f"internal error of the rig: {what}\n{where}\n  fix: {problem.fix}", file=sys.stderr)
    if verbose:
        print(tb, end="", file=sys.stderr)
    return problem.code
