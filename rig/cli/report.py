"""`rig summary`: a saved run's report as Markdown (a CI job summary)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rig.errors import RigError
from rig.results import report


def cmd_summary(args: argparse.Namespace) -> int:
    path = Path(args.report)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RigError(f"cannot read the run report {path}: {exc}",
                       fix="pass the file `rig run --json FILE` wrote") from exc
    print(report.markdown(doc))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = sub.add_parser("summary", help="a `rig run --json` report as a Markdown summary")
    m.add_argument("report", metavar="RUN_JSON")
    m.set_defaults(func=cmd_summary)
