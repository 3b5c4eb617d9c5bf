"""The `rig` command line: the parser, and exit codes.

Exit codes: 0 all passed, 1 a scenario failed, 2 a set-up error (with the
fix), 3 a guest died or hung, 4 an internal error of the rig (its
traceback in the log), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rig.cli import bench, build, guest, report
from rig.errors import RigError

EXIT_INTERNAL = 4


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rig", description="tphlab: build, boot and check the "
                                "TPH dma-buf bench")
    sub = p.add_subparsers(dest="command", required=True)
    build.add_parsers(sub)
    report.add_parsers(sub)
    guest.add_parsers(sub)
    bench.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RigError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
