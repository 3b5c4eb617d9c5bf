"""`rig run`: build, boot (or restore) and run the scenario matrix, and write its
reports however it ends."""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from rig import stopsignals
from rig.builder import artifacts, reference
from rig.cli import options
from rig.cli.guest import keep_session, no_session, session_text
from rig.errors import RigError
from rig.execution import runner
from rig.execution.request import Reports, RunRequest
from rig.guest import faults, kvm
from rig.guest import vm as vm_mod
from rig.paths import run_dir
from rig.progress import Progress
from rig.results import report
from rig.results.run import Outcome, Problem, Run
from rig.scenarios import hint_cases, matrix
from rig.scenarios.kit import Scenario


def select(cases: list[Scenario], patterns: Sequence[str]) -> list[Scenario]:
    """The cases -k picks: a pattern that is a scenario's whole name picks that
    one (no-tph, not rootports-no-tph too); any other picks every name it is
    a part of, or that it matches as a glob."""
    if not patterns:
        return cases
    names = {c.name for c in cases}

    def picks(p: str, name: str) -> bool:
        return name == p if p in names else fnmatch.fnmatch(name, p) or p in name

    chosen = [c for c in cases if any(picks(p, c.name) for p in patterns)]
    if not chosen:
        every = ", ".join(c.name for c in cases)
        raise RigError(f"-k {' '.join(patterns)} matches no scenario", fix=f"pick from: {every}")
    return chosen


def deselect(cases: list[Scenario], patterns: Sequence[str]) -> list[Scenario]:
    """The cases -K leaves: those no pattern picks (the rules of -k)."""
    if not patterns:
        return cases
    left = [c for c in cases if c not in select(cases, patterns)]
    if not left:
        raise RigError(f"-K {' '.join(patterns)} leaves no scenario",
                       fix="exclude fewer scenarios")
    return left


def run_request(args: argparse.Namespace) -> RunRequest:
    """`rig run`'s arguments as the typed request the rest of the run reads."""
    return RunRequest(
        patterns=tuple(args.k or ()), excluded=tuple(args.K or ()), st=args.st, ph=args.ph,
        accel=args.accel,
        boot_timeout=args.boot_timeout, case_timeout=args.timeout, fault=args.inject,
        fault_into=args.inject_into, pack=not args.unpacked,
        keep_guest=args.keep_guest, snapshots=not args.no_snapshot,
        reports=Reports(json=Path(args.json) if args.json else None,
                        junit=Path(args.junit) if args.junit else None,
                        ktap=args.ktap, keep_logs=args.keep))


def scenarios(request: RunRequest) -> list[Scenario]:
    """The matrix's scenarios the request selects, and its own --st/--ph one."""
    cases = deselect(select(matrix.full(), request.patterns), request.excluded)
    if request.st is not None or request.ph is not None:
        st = request.st if request.st is not None else 0
        ph = request.ph if request.ph is not None else 0
        if not 0 <= st <= 0xFFFF or not 0 <= ph <= 3:
            raise RigError(f"--st {st:#x} --ph {ph}: ST is 0..0xffff and PH 0..3",
                           fix="pass values in range")
        cases.append(hint_cases.custom(st, ph))
    if request.fault_into is not None:
        topos = sorted({c.topo.name for c in cases})
        if request.fault is None:
            raise RigError("--inject-into needs --inject FAULT", fix="add --inject FAULT")
        if request.fault_into not in topos:
            raise RigError(f"--inject-into {request.fault_into}: no scenario of this run is "
                           "on that topology", fix=f"pick one of: {', '.join(topos)}")
    return cases


def cmd_run(args: argparse.Namespace) -> int:
    """Build, boot, run; the reports are written however the run ends.

    The table (or KTAP) is printed and --json/--junit written, and the run
    directory keeps run.json, junit.xml and run.ktap, after a failure, a
    crash or Ctrl-C too. A set-up error before any guest booted writes the
    asked-for reports with every scenario NOT_RUN, then is raised as usual.
    """
    request = run_request(args)
    progress = Progress()
    cases = scenarios(request)
    accel_name = request.accel
    keeper = runner.Keeper() if request.keep_guest else None
    try:
        if keeper is not None:
            no_session("--keep-guest")      # the kept guest becomes the `rig boot` one
        wanted = options.build_request(args, "all")
        built = artifacts.build(wanted, progress)
        # Whether a contract difference is a fault (our series) or a DIFFERS
        ours = wanted.kernel is None or reference.is_reference(wanted.kernel)
        arts = built.guest()
        vm_mod.require_device(arts.qemu)
        accel = options.choose_accel(request.accel, progress, arts)
        accel_name = accel.name
        rundir = run_dir("run")
    except BaseException as exc:
        _write_reports(request.reports, _not_started(cases, accel_name, exc), None)
        raise
    progress.begin(f"running {len(cases)} scenarios (logs: {rundir})")

    def on_outcome(o: Outcome) -> None:
        progress.note(f"{o.status.value} {o.name} ({o.seconds:.2f}s)")

    def on_stage(topo: str, stage: str, secs: float) -> None:
        progress.note(f"boot {topo}: {stage} at {secs:.2f}s")

    opts = dataclasses.replace(runner.Options.of(request, keeper), reference=ours)
    try:
        run = runner.run_matrix(cases, arts, accel, rundir, on_outcome, on_stage, opts)
    except BaseException as exc:      # run_matrix returns whatever happens; to be sure
        if keeper is not None and keeper.kept is not None:
            keeper.kept.vm.stop()
        run = _not_started(cases, accel.name, exc, "the rig broke while running")
        run.logs = rundir
        _write_reports(request.reports, run, rundir)
        raise
    run.sources = built.sources()
    if "kernel" in run.sources:
        run.sources["kernel"]["reference"] = ours
    if request.reports.ktap:      # as `rig report --ktap` prints it (KTAP ends in a newline)
        print(report.to_ktap(run), end="")
    else:             # -v: every scenario's whole row, not only the failures
        print(report.table(run, full=bool(getattr(args, "verbose", False))))
    _write_reports(request.reports, run, rundir)
    for p in run.problems:
        print(p.render(), file=sys.stderr)
    if run.interrupted:
        print(run.interruption, file=sys.stderr)
    if keeper is not None:
        _report_kept(keeper)
    if run.passed and not request.reports.keep_logs:
        shutil.rmtree(rundir, ignore_errors=True)
    elif not run.passed:
        print(f"logs kept in {rundir}", file=sys.stderr)
    return run.exit_code


def _not_started(cases: list[Scenario], accel: str, exc: BaseException,
                 when: str = "the run did not start") -> Run:
    """The Run of a run that an exception ended before it had one."""
    if isinstance(exc, KeyboardInterrupt):
        why = stopsignals.describe(stopsignals.signum_of(exc))
        run = runner.unrun(cases, accel, f"the run was {why}")
        run.interrupt(exc)
        return run
    problem = Problem.of(exc)
    return runner.unrun(cases, accel, f"{when}: {problem.message.splitlines()[0]}", problem)


def _write_reports(reports: Reports, run: Run, rundir: Path | None) -> None:
    """--json and --junit, and the run directory's copies (a report left
    unwritten is named on stderr, the others still written)."""
    targets: list[tuple[Path, Callable[[], str]]] = []
    if rundir is not None:
        targets += [(rundir / "run.json", run.to_json),
                    (rundir / "junit.xml", lambda: report.to_junit(run)),
                    (rundir / "run.ktap", lambda: report.to_ktap(run))]
    if reports.json is not None:
        targets.append((reports.json, run.to_json))
    if reports.junit is not None:
        targets.append((reports.junit, lambda: report.to_junit(run)))
    for path, render in targets:
        try:
            path.write_text(render())
        except OSError as exc:
            print(f"error: cannot write {path}: {exc}", file=sys.stderr)


def _report_kept(keeper: runner.Keeper) -> None:
    """--keep-guest: save the kept guest as the `rig boot` session, and say how to
    reach it (or that no guest was kept)."""
    kept = keeper.kept
    if kept is None:
        why = (f"the guest of {', '.join(keeper.stopped)}, where a scenario failed, died "
               "or the run was interrupted"
               if keeper.stopped else "no scenario failed")
        print(f"--keep-guest: no guest kept ({why})", file=sys.stderr)
        return
    vm = cast(vm_mod.VM, kept.vm)
    if not vm.alive():
        print(f"--keep-guest: the guest of {kept.topo.name} is gone (console "
              f"{vm.console})", file=sys.stderr)
        return
    try:
        sess = keep_session(vm, kept.accel, kept.bench.devices())
    except BaseException:
        vm.stop()               # a guest nobody can find again is not left behind
        raise
    others = (f"; the guests of {', '.join(keeper.stopped)} stopped (one is kept)"
              if keeper.stopped else "")
    which = (f"{kept.topo.name} ({kept.topo.describe()})" if kept.topo.placements
             else f"of topology {kept.topo.name}")
    print(f"--keep-guest: the guest {which} is still running "
          f"({', '.join(kept.failed)} failed{others}), pid {sess.pid}\n"
          f"{session_text(sess)}", file=sys.stderr)



def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("run", help="build, boot and run the scenario matrix")
    r.add_argument("-k", action="append", metavar="PATTERN", help="only matching scenarios")
    r.add_argument("-K", action="append", metavar="PATTERN",
                   help="leave out matching scenarios (e.g. -K 'selftest-*': the kernel's "
                        "VFIO selftests, minutes under TCG)")
    r.add_argument("--json", metavar="FILE", help="write a JSON report")
    r.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    r.add_argument("--ktap", action="store_true", help="print KTAP instead of the table")
    r.add_argument("--keep", action="store_true", help="keep the run's logs even if all pass")
    r.add_argument("--st", type=lambda s: int(s, 0), help="add a scenario with this ST")
    r.add_argument("--ph", type=int, help="add a scenario with this PH")
    r.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto", help=kvm.ACCEL_HELP)
    r.add_argument("--boot-timeout", type=float, default=120.0, metavar="S",
                   help="seconds a guest may take to answer over SSH (default 120)")
    r.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds one scenario may take in the guest (default 60)")
    r.add_argument("--inject", choices=tuple(faults.FAULTS), metavar="FAULT",
                   help="inject a fault to check how the rig fails: " + "; ".join(
                       f"{k}: {v}" for k, v in faults.FAULTS.items()))
    r.add_argument("--inject-into", metavar="TOPOLOGY",
                   help="inject the fault only into the guest that holds this topology, "
                        "right before its first scenario (not once the devices are bound)")
    r.add_argument("--unpacked", action="store_true",
                   help="boot a guest per topology instead of packing the topologies that "
                        "can share a guest into one (the verdicts are the same)")
    r.add_argument("--no-snapshot", action="store_true",
                   help="boot every guest: neither restore one from its snapshot nor save "
                        "one (by default a guest is saved once booted and bound, and the "
                        "next run with the same QEMU, kernel, image and topology restores "
                        "it; a snapshot that does not restore is deleted and the guest "
                        "boots)")
    r.add_argument("--keep-guest", action="store_true",
                   help="leave the guest of the first topology with a failing scenario "
                        "running (as `rig boot` does) for inspection; one guest at most")
    r.set_defaults(func=cmd_run)
    options.add_build_args(r)
