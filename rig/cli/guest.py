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

from qemu.qmp import ExecuteError

from rig import stopsignals
from rig.build import artifacts
from rig.cli import options
from rig.errors import RigError
from rig.execution import runner
from rig.guest import boot_session, bringup, devices, faults, kvm, pci_address, snapshot
from rig.guest import vm as vm_mod
from rig.guest.kvm import Accel
from rig.guest.topology import Device
from rig.paths import run_dir
from rig.progress import Progress
from rig.results import report
from rig.results.run import Outcome, Problem, Run
from rig.scenarios import hint_cases, matrix
from rig.scenarios.kit import Scenario

MIN_INTERVAL, MAX_INTERVAL = 0.05, 10.0       # rig hints --follow --interval bounds


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
    keeper = runner.Keeper() if args.keep_guest else None
    try:
        if keeper is not None:
            _no_session("--keep-guest")      # the kept guest becomes the `rig boot` one
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
                          fault=args.inject, keeper=keeper,
                          snapshots=None if args.no_snapshot else snapshot.Store())
    try:
        run = runner.run_matrix(cases, arts, accel, rundir, on_outcome, on_stage, opts)
    except BaseException as exc:      # run_matrix returns whatever happens; to be sure
        if keeper is not None and keeper.kept is not None:
            keeper.kept.vm.stop()
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
        print(run.interruption, file=sys.stderr)
    if keeper is not None:
        _report_kept(keeper)
    if run.passed and not args.keep:
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


def _no_session(what: str) -> None:
    """RigError if a guest of `rig boot` (or a kept one) is running: one at a time."""
    try:
        old = boot_session.load()
    except RigError:
        return
    raise RigError(f"{what}: a guest is already running (pid {old.pid}, topology "
                   f"{old.topology})", fix="rig stop")


def _session_text(sess: boot_session.Session) -> str:
    """How to reach a running guest: its devices, then the commands."""
    devs = "".join(f"  {d.role + ':':<9} {d.bdf}  QOM {d.qom_id} ({d.qom_path})\n"
                   for d in sess.devices)
    return (f"{devs}"
            f"  ssh:      rig ssh [CMD]   (127.0.0.1:{sess.ssh_port}, key {sess.client_key})\n"
            f"            in the guest: tphctl open exporter ...  (roles: "
            f"/etc/tphlab/devices)\n"
            f"  hints:    rig hints [--device ROLE] [--follow]\n"
            f"  QMP:      {sess.qmp_socket}\n"
            f"  console:  {sess.console_log}\n"
            f"  stop:     rig stop")


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
    print(f"--keep-guest: the guest of topology {kept.topo.name} is still running "
          f"({', '.join(kept.failed)} failed{others}), pid {sess.pid}\n"
          f"{_session_text(sess)}", file=sys.stderr)


def keep_session(vm: vm_mod.VM, accel: Accel, devices: list[Device]) -> boot_session.Session:
    """Save a running guest as the `rig boot` session; the rig lets go of it
    (its SSH connection closed, QEMU left running)."""
    sess = boot_session.Session.of(vm, accel.name, devices)
    sess.save()
    if vm.shell:
        vm.shell.close()
        vm.shell = None
    return sess


def list_topologies() -> str:
    """`rig boot --list-topologies`: each topology of the matrix, its settings and
    its scenarios."""
    lines = []
    for topo, names in matrix.topologies():
        shown = ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")
        lines += [f"{topo.name}{' (rig boot default)' if topo == hint_cases.DEFAULT else ''}",
                  f"    {topo.describe()}", f"    scenarios: {shown}"]
    return "\n".join(lines)


def cmd_boot(args: argparse.Namespace) -> int:
    if args.list_topologies:
        print(list_topologies())
        return 0
    topo = matrix.topology(args.topology) if args.topology else hint_cases.DEFAULT
    _no_session("rig boot")
    progress = Progress()
    built = artifacts.build(options.build_request(args, "all"), progress)
    arts = built.guest()
    vm_mod.require_device(arts.qemu)
    accel = options.choose_accel(args.accel, progress, arts)
    vm, accel = bringup.start_vm(arts, topo, run_dir("boot"), accel,
                                lambda s, t: progress.note(f"boot {topo.name}: {s} at {t:.2f}s"),
                                outlive_rig=True)
    try:
        bench = devices.bind_devices(vm)
        sess = keep_session(vm, accel, bench.devices())
    except BaseException:
        vm.stop()
        raise
    print(f"guest up in {vm.boot_seconds:.2f}s (topology {topo.name}; {accel.name}; "
          f"{accel.reason}), pid {sess.pid}\n{_session_text(sess)}")
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


HINTS_HEADER = f"{'seq':>6} {'gen':>4}  {'requester':<16}  {'offset':>10} {'length':>8}  hint"


def _fmt_record(r: dict[str, object], sess: boot_session.Session | None = None) -> str:
    """One hint record as `rig hints` prints it; the requester named by its role
    when it is one of the guest's tph-testdevs."""
    rid = int(str(r["requester-id"]))
    role = sess.role_of(rid) if sess is not None else None
    req = pci_address.bdf_of(rid) + (f" {role}" if role else "")
    gen = r.get("generation", "-")                 # the device's resets before it
    return (f"{r['seq']:>6} {gen:>4}  {req:<16}  {int(str(r['offset'])):#10x} {r['length']:>8}  "
            f"TH={int(bool(r['th']))} PH={r['ph']} ST={int(str(r['st'])):#06x} "
            f"{'ext' if r['ext'] else '8-bit'}")


def _query_hints(sess: boot_session.Session, path: str, since: int) -> dict[str, Any]:
    """One x-query-tph-hints, on a QMP connection of its own (QEMU's QMP takes
    one client at a time: a `rig hints --follow` must not lock out another
    `rig hints` or `rig stop`)."""
    q = sess.qmp()
    try:
        return cast(dict[str, Any], q.cmd("x-query-tph-hints", path=path, since=since))
    except ExecuteError as exc:
        raise RigError(f"QMP x-query-tph-hints on {path} failed: {exc}",
                       fix="name a tph-testdev: --device exporter|importer|spare, its "
                           "QOM id or path") from exc
    finally:
        q.close()


def cmd_hints(args: argparse.Namespace) -> int:
    """What the device received: the hint log once (from --since SEQ), or with
    --follow every record as it arrives, polled every --interval s, until
    Ctrl-C or the guest stops."""
    if not MIN_INTERVAL <= args.interval <= MAX_INTERVAL:
        raise RigError(f"--interval {args.interval}: polls are {MIN_INTERVAL} to "
                       f"{MAX_INTERVAL} s apart", fix="pass a value in range")
    if args.since < 0:
        raise RigError(f"--since {args.since}: a sequence number is 0 or more",
                       fix="pass the seq of the first record to show")
    sess = boot_session.load()
    path, dev = sess.device(args.device)
    since = args.since
    last_total: int | None = None
    dropped = 0
    if not args.json:
        name = f"{dev.role} {dev.qom_id} ({dev.bdf})" if dev is not None else path
        print(f"hints received by {name}" + (f", from seq {since}" if since else ""))
        print(HINTS_HEADER, flush=True)
    try:
        while True:
            try:
                res = _query_hints(sess, path, since)
            except RigError:
                if args.follow and not sess.alive():
                    print(f"the guest (pid {sess.pid}) stopped", file=sys.stderr)
                    return 0
                raise
            if args.json and not args.follow:
                print(json.dumps(res, indent=2))
                return 0
            total = int(res["total"])
            if last_total is not None and total < last_total:
                # The log started again (total is the seq of the next record).
                print("(the hint log was cleared)", file=sys.stderr, flush=True)
                since, last_total = 0, None
                continue
            for r in res["records"]:
                print(json.dumps(r) if args.json else _fmt_record(r, sess), flush=True)
            if not args.follow:
                print(f"total {res['total']}, dropped {res['dropped']}")
                return 0
            if int(res["dropped"]) > dropped:
                print(f"({int(res['dropped']) - dropped} more record(s) dropped: the log "
                      "was full)", file=sys.stderr, flush=True)
                dropped = int(res["dropped"])
            # Asking from total gives only the records that come after these.
            since = last_total = total
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


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
    b = sub.add_parser("boot", help="boot the bench guest and leave it running")
    b.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto", help=kvm.ACCEL_HELP)
    b.add_argument("--topology", metavar="NAME",
                   help="boot this topology of the matrix (default: default)")
    b.add_argument("--list-topologies", action="store_true",
                   help="name the matrix's topologies, their settings and scenarios")
    b.set_defaults(func=cmd_boot)
    for p in (r, b):
        options.add_build_args(p)
    s = sub.add_parser("ssh", help="run a command in the running guest (or a shell)")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s.add_argument("--timeout", type=float, default=60.0)
    s.set_defaults(func=cmd_ssh)
    h = sub.add_parser("hints", help="the hints the exporter received (QMP)")
    h.add_argument("--json", action="store_true",
                   help="the QMP reply as JSON (with --follow: one record a line)")
    h.add_argument("--follow", action="store_true",
                   help="keep printing records as they arrive, until Ctrl-C")
    h.add_argument("--interval", type=float, default=0.5, metavar="S",
                   help=f"--follow: seconds between polls ({MIN_INTERVAL} to {MAX_INTERVAL}, "
                        "default 0.5)")
    h.add_argument("--since", type=int, default=0, metavar="SEQ",
                   help="only records from sequence number SEQ on")
    h.add_argument("--device", default="exporter", metavar="DEV",
                   help="a role (exporter, importer, spare), QOM id or QOM path "
                        "(default exporter)")
    h.set_defaults(func=cmd_hints)
    t = sub.add_parser("stop", help="stop the guest `rig boot` started")
    t.set_defaults(func=cmd_stop)
