"""`rig run`, `rig boot`, `rig ssh`, `rig hints`, `rig stop`: the guest side of the CLI."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from rig.build import artifacts
from rig.cli import options
from rig.errors import RigError
from rig.guest import boot_session, faults, kvm
from rig.guest import vm as vm_mod
from rig.guest.topology import EXPORTER_ID
from rig.paths import run_dir
from rig.progress import Progress
from rig.results import report, runner
from rig.results.run import EXIT_INTERNAL, Outcome, Problem, Run
from rig.scenarios import hint_cases, matrix
from rig.scenarios.kit import Scenario


def select(cases: list[Scenario], patterns: list[str] | None) -> list[Scenario]:
    if not patterns:
        return cases
    chosen = [c for c in cases
              if any(fnmatch.fnmatch(c.name, p) or p in c.name for p in patterns)]
    if not chosen:
        names = ", ".join(c.name for c in cases)
        raise RigError(f"-k {' '.join(patterns)} matches no scenario", fix=f"pick from: {names}")
    return chosen


def cmd_run(args: argparse.Namespace) -> int:
    """Build, boot, run; the reports are written however the run ends.

    The table (or KTAP) is printed and --json/--junit written, and the run
    directory keeps run.json, junit.xml and run.ktap, after a failure, a
    crash or Ctrl-C too. A set-up error before any guest booted writes the
    asked-for reports with every scenario NOT_RUN, then is raised as usual.
    """
    progress = Progress()
    cases = select(matrix.full(), args.k)
    if args.st is not None or args.ph is not None:
        st, ph = args.st if args.st is not None else 0, args.ph if args.ph is not None else 0
        if not 0 <= st <= 0xFFFF or not 0 <= ph <= 3:
            raise RigError(f"--st {st:#x} --ph {ph}: ST is 0..0xffff and PH 0..3",
                           fix="pass values in range")
        cases.append(hint_cases.custom(st, ph))
    accel_name = args.accel
    try:
        built = artifacts.build(options.build_request(args, "all"), progress)
        arts = built.guest()
        vm_mod.require_device(arts.qemu)
        accel = options.choose_accel(args.accel, progress, arts)
        accel_name = accel.name
        rundir = run_dir("run")
    except BaseException as exc:
        _write_reports(args, _not_started(cases, accel_name, exc), None)
        raise
    progress.begin(f"running {len(cases)} scenarios (logs: {rundir})")

    def on_outcome(o: Outcome) -> None:
        progress.note(f"{o.status.value} {o.name} ({o.seconds:.2f}s)")

    def on_stage(topo: str, stage: str, secs: float) -> None:
        progress.note(f"boot {topo}: {stage} at {secs:.2f}s")

    opts = runner.Options(boot_timeout=args.boot_timeout, case_timeout=args.timeout,
                          fault=args.inject)
    try:
        run = runner.run_matrix(cases, arts, accel, rundir, on_outcome, on_stage, opts)
    except BaseException as exc:      # run_matrix returns whatever happens; to be sure
        run = _not_started(cases, accel.name, exc, "the rig broke while running")
        run.logs = rundir
        _write_reports(args, run, rundir)
        raise
    run.sources = built.sources()
    if args.ktap:      # as `rig report --ktap` prints it (KTAP ends in a newline)
        print(report.to_ktap(run), end="")
    else:
        print(report.table(run))
    _write_reports(args, run, rundir)
    for p in run.problems:
        print(p.render(), file=sys.stderr)
    if run.interrupted:
        print("interrupted", file=sys.stderr)
    if run.passed and not args.keep:
        shutil.rmtree(rundir, ignore_errors=True)
    elif not run.passed:
        print(f"logs kept in {rundir}", file=sys.stderr)
    return run.exit_code


def _not_started(cases: list[Scenario], accel: str, exc: BaseException,
                 when: str = "the run did not start") -> Run:
    """The Run of a run that an exception ended before it had one."""
    if isinstance(exc, KeyboardInterrupt):
        run = runner.unrun(cases, accel, "the run was interrupted")
        run.interrupted = True
        return run
    if isinstance(exc, RigError):
        problem = Problem(exc.exit_code, exc.message, exc.log, exc.fix)
    else:
        problem = Problem(EXIT_INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
    return runner.unrun(cases, accel, f"{when}: {problem.message.splitlines()[0]}", problem)


def _write_reports(args: argparse.Namespace, run: Run, rundir: Path | None) -> None:
    """--json and --junit, and the run directory's copies (a report left
    unwritten is named on stderr, the others still written)."""
    targets: list[tuple[Path, Callable[[], str]]] = []
    if rundir is not None:
        targets += [(rundir / "run.json", run.to_json),
                    (rundir / "junit.xml", lambda: report.to_junit(run)),
                    (rundir / "run.ktap", lambda: report.to_ktap(run))]
    if args.json:
        targets.append((Path(args.json), run.to_json))
    if args.junit:
        targets.append((Path(args.junit), lambda: report.to_junit(run)))
    for path, render in targets:
        try:
            path.write_text(render())
        except OSError as exc:
            print(f"error: cannot write {path}: {exc}", file=sys.stderr)


def cmd_boot(args: argparse.Namespace) -> int:
    try:
        old = boot_session.load()
    except RigError:
        old = None
    if old is not None:
        raise RigError(f"a guest is already running (pid {old.pid})", fix="rig stop")
    progress = Progress()
    built = artifacts.build(options.build_request(args, "all"), progress)
    arts = built.guest()
    vm_mod.require_device(arts.qemu)
    accel = options.choose_accel(args.accel, progress, arts)
    vm, accel = runner.start_vm(arts, hint_cases.DEFAULT, run_dir("boot"), accel,
                                lambda s, t: progress.note(f"boot: {s} at {t:.2f}s"))
    assert vm.proc is not None
    try:
        runner.bind_devices(vm)
    except BaseException:
        vm.stop()
        raise
    sess = boot_session.Session(vm.proc.pid, vm.ssh_port, str(vm.qmp_path), str(vm.console),
                           str(arts.client_key), str(arts.host_key), accel.name)
    sess.save()
    if vm.shell:
        vm.shell.close()
    print(f"guest up in {vm.boot_seconds:.2f}s ({accel.name}; {accel.reason}), "
          f"pid {sess.pid}\n"
          f"  ssh:     rig ssh [CMD]   (127.0.0.1:{sess.ssh_port}, key {sess.client_key})\n"
          f"  hints:   rig hints [--follow]\n"
          f"  QMP:     {sess.qmp_socket}\n"
          f"  console: {sess.console_log}\n"
          f"  stop:    rig stop")
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    sess = boot_session.load()
    if not args.cmd:
        ssh = shutil.which("ssh")
        if not ssh:
            raise RigError("no command given and no ssh client for an interactive shell",
                           fix="give a command: rig ssh CMD, or apt-get install openssh-client")
        os.execv(ssh, [ssh, "-i", sess.client_key, "-p", str(sess.ssh_port),
                       "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                       "root@127.0.0.1"])
    shell = sess.shell()
    res = shell.run(" ".join(args.cmd), timeout=args.timeout)
    shell.close()
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    return res.rc


def _fmt_record(r: dict[str, object]) -> str:
    rid = int(str(r["requester-id"]))
    return (f"{r['seq']:>6}  {rid >> 8:02x}:{(rid >> 3) & 0x1f:02x}.{rid & 7}  "
            f"{int(str(r['offset'])):#10x} {r['length']:>8}  TH={int(bool(r['th']))} "
            f"PH={r['ph']} ST={int(str(r['st'])):#06x} {'ext' if r['ext'] else '8-bit'}")


def cmd_hints(args: argparse.Namespace) -> int:
    sess = boot_session.load()
    q = sess.qmp()
    path = f"/machine/peripheral/{args.device}"
    since = 0
    if not args.json:
        print(f"{'seq':>6}  requester  {'offset':>10} {'length':>8}  hint")
    try:
        while True:
            res = cast(dict[str, Any], q.cmd("x-query-tph-hints", path=path, since=since))
            if args.json and not args.follow:
                print(json.dumps(res, indent=2))
                return 0
            for r in res["records"]:
                print(json.dumps(r) if args.json else _fmt_record(r), flush=True)
            # total is the seq of the next record: asking from it gives only new ones.
            since = int(res["total"])
            if not args.follow:
                print(f"total {res['total']}, dropped {res['dropped']}")
                return 0
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        q.close()


def cmd_stop(args: argparse.Namespace) -> int:
    sess = boot_session.load()
    sess.stop()
    print(f"stopped guest pid {sess.pid}")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("run", help="build, boot and run the scenario matrix")
    r.add_argument("-k", action="append", metavar="PATTERN", help="only matching scenarios")
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
    r.set_defaults(func=cmd_run)
    b = sub.add_parser("boot", help="boot the bench guest and leave it running")
    b.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto", help=kvm.ACCEL_HELP)
    b.set_defaults(func=cmd_boot)
    for p in (r, b):
        options.add_build_args(p)
    s = sub.add_parser("ssh", help="run a command in the running guest (or a shell)")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s.add_argument("--timeout", type=float, default=60.0)
    s.set_defaults(func=cmd_ssh)
    h = sub.add_parser("hints", help="the hints the exporter received (QMP)")
    h.add_argument("--json", action="store_true")
    h.add_argument("--follow", action="store_true", help="keep printing new records")
    h.add_argument("--device", default=EXPORTER_ID, help="tph-testdev id (default tphexp)")
    h.set_defaults(func=cmd_hints)
    t = sub.add_parser("stop", help="stop the guest `rig boot` started")
    t.set_defaults(func=cmd_stop)
