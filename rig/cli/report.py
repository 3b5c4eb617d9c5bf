"""`rig report`: a saved run (`rig run --json`) rendered again, exactly as it was;
`rig compare`: what two saved runs did differently.

`rig summary RUN_JSON` is the old name of `rig report RUN_JSON --markdown`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rig.errors import RigError
from rig.results import compare, report, run


def _load(path: Path) -> run.Run:
    try:
        return run.load(path)
    except (OSError, UnicodeDecodeError, run.FormatError) as exc:
        raise RigError(f"cannot read the run report {path}: {exc}",
                       fix="pass the file `rig run --json FILE` wrote (or RUNDIR/run.json)"
                       ) from exc


def cmd_report(args: argparse.Namespace) -> int:
    saved = _load(Path(args.report))
    if args.junit:
        Path(args.junit).write_text(report.to_junit(saved))
    if args.markdown:
        print(report.markdown(saved))
    elif args.ktap:
        print(report.to_ktap(saved), end="")  # it ends in a newline
    else:
        print(report.table(saved, full=bool(getattr(args, "verbose", False))))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """What differs per scenario between two saved runs; 0 when nothing does."""
    diff = compare.compare(_load(Path(args.a)), _load(Path(args.b)))
    print(compare.render(diff))
    return 0 if diff.equal else 1


def cmd_summary(args: argparse.Namespace) -> int:
    print("rig summary is deprecated: use rig report RUN_JSON --markdown", file=sys.stderr)
    print(report.markdown(_load(Path(args.report))))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("report", help="render a saved run (`rig run --json`) again: the "
                       "table, or KTAP, Markdown, JUnit")
    r.add_argument("report", metavar="RUN_JSON")
    r.add_argument("--junit", metavar="FILE", help="write the run's JUnit XML to FILE")
    fmt = r.add_mutually_exclusive_group()
    fmt.add_argument("--ktap", action="store_true", help="print KTAP instead of the table")
    fmt.add_argument("--markdown", action="store_true",
                     help="print Markdown instead of the table (a CI job summary)")
    r.set_defaults(func=cmd_report)
    c = sub.add_parser("compare", help="what two saved runs did differently, per scenario: "
                       "verdict, errnos, DMA outcomes, hint records (exit 1 if anything "
                       "differs)")
    c.add_argument("a", metavar="RUN_A_JSON")
    c.add_argument("b", metavar="RUN_B_JSON")
    c.set_defaults(func=cmd_compare)
    m = sub.add_parser("summary", help="deprecated: rig report RUN_JSON --markdown")
    m.add_argument("report", metavar="RUN_JSON")
    m.set_defaults(func=cmd_summary)
