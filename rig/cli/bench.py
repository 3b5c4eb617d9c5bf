"""`rig bench`: how fast the bench answers, each figure against its target."""

from __future__ import annotations

import argparse
from pathlib import Path

from rig import bench
from rig.builder import artifacts
from rig.cli import options
from rig.guest import kvm, vm
from rig.progress import Progress


def cmd_bench(args: argparse.Namespace) -> int:
    progress = Progress()
    arts = artifacts.build(options.build_request(args, "all"), progress).guest()
    vm.require_device(arts.qemu)
    accel = options.choose_accel(args.accel, progress, arts)
    accel, figs = bench.measure(arts, accel, args.runs, args.cold, progress)
    print(bench.render(accel, args.runs, figs))
    if args.json:
        Path(args.json).write_text(bench.to_json(accel, figs))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("bench", help="time builds, boot and the matrix against the targets")
    b.add_argument("--runs", type=int, default=3, help="runs per figure (median, min, max)")
    b.add_argument("--json", metavar="FILE")
    b.add_argument("--cold", action="store_true",
                   help="also time a cold build of each component (scratch cache)")
    b.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help=kvm.ACCEL_HELP)
    b.set_defaults(func=cmd_bench)
