"""`rig bench`: how fast the bench answers, each figure against its target."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from rig import guestcli, matrix, runner
from rig.paths import repo_root
from rig.progress import Progress
from rig.topology import Topology


@dataclass(frozen=True)
class Figure:
    name: str
    median: float
    low: float
    high: float
    runs: int
    target: float | None

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.median < self.target

    def line(self) -> str:
        mark = "" if self.met is None else ("met" if self.met else "NOT MET")
        tgt = f"< {self.target:g}s" if self.target is not None else ""
        return (f"{self.name:28} {self.median:8.2f}s  (min {self.low:.2f}, max {self.high:.2f}, "
                f"n={self.runs})  {tgt:9} {mark}")


def figure(name: str, samples: list[float], target: float | None) -> Figure:
    return Figure(name, statistics.median(samples), min(samples), max(samples), len(samples),
                  target)


def targets(accel: str) -> dict[str, float]:
    with (repo_root() / "bench" / "targets.toml").open("rb") as f:
        data = tomllib.load(f)
    return {k: float(v) for k, v in data.get(accel, {}).items()}


def cmd_bench(args: argparse.Namespace) -> int:
    from rig.cli import build_components

    progress = Progress()
    results = build_components(args, "all", progress)
    arts = guestcli.artifacts(results)
    guestcli.require_device(arts.qemu)
    accel = guestcli.choose_accel(args.accel, progress, arts)
    tg = targets(accel)
    figs: list[Figure] = []

    noop = []
    for _ in range(args.runs):
        # The whole command, as a user runs it: interpreter start-up included.
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "rig", "build", "all"], capture_output=True,
                       check=True, timeout=600)
        noop.append(time.monotonic() - t)
    figs.append(figure("no-op build", noop, tg.get("noop_build")))

    boots = []
    for i in range(args.runs):
        progress.note(f"boot {i + 1}/{args.runs}")
        vm, accel = runner.start_vm(arts, Topology(), guestcli.run_dir("bench") / f"boot{i}",
                                    accel)
        boots.append(vm.boot_seconds)
        vm.stop()
    figs.append(figure("boot to SSH", boots, tg.get("boot_to_ssh")))

    wholes: list[float] = []
    per_case: dict[str, list[float]] = {}
    for i in range(args.runs):
        progress.note(f"warm matrix {i + 1}/{args.runs}")
        t = time.monotonic()
        run = runner.run_matrix(matrix.full(), arts, accel, guestcli.run_dir("bench"))
        wholes.append(time.monotonic() - t)
        for o in run.outcomes:
            per_case.setdefault(o.case.name, []).append(o.seconds)
        if not run.passed:
            progress.note("warning: a scenario failed during the bench")
    figs.append(figure("warm matrix", wholes, tg.get("warm_matrix")))
    figs += [figure(f"  {name}", s, None) for name, s in per_case.items()]

    print(f"rig bench ({accel}, {args.runs} runs each)")
    for f in figs:
        print(f.line())
    if args.json:
        Path(args.json).write_text(json.dumps({"accel": accel, "figures": [
            {**asdict(f), "met": f.met} for f in figs]}, indent=2))
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("bench", help="time builds, boot and the matrix against the targets")
    b.add_argument("--runs", type=int, default=3, help="runs per figure (median, min, max)")
    b.add_argument("--json", metavar="FILE")
    b.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    b.set_defaults(func=cmd_bench)
