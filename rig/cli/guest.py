"""`rig boot`, `rig ssh`, `rig hints`, `rig stop`: the bench guest by hand."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any, cast

from qemu.qmp import ExecuteError

from rig.builder import artifacts
from rig.cli import options
from rig.errors import RigError
from rig.guest import boot_session, bringup, devices, kvm, packing, pci_address
from rig.guest import vm as vm_mod
from rig.guest.kvm import Accel
from rig.guest.topology import Device
from rig.paths import run_dir
from rig.progress import Progress
from rig.scenarios import hint_cases, kit, matrix

MIN_INTERVAL, MAX_INTERVAL = 0.05, 10.0       # rig hints --follow --interval bounds


def no_session(what: str) -> None:
    """RigError if a guest of `rig boot` (or a kept one) is running: one at a time."""
    try:
        old = boot_session.load()
    except RigError:
        return
    raise RigError(f"{what}: a guest is already running (pid {old.pid}, topology "
                   f"{old.topology})", fix="rig stop")


def session_text(sess: boot_session.Session) -> str:
    """How to reach a running guest: its devices, then the commands."""
    devs = "".join(f"  {d.role + ':':<9} {d.bdf}  QOM {d.qom_id} ({d.qom_path})\n"
                   for d in sess.devices)
    # A packed guest (rig run --keep-guest): roles end in their topology's
    # name, and tphctl is told which importer is the topology's
    first = next((d for d in sess.devices if d.role.startswith("importer.")), None)
    use = ("tphctl open exporter ..." if first is None else
           f"TPHLAB_IMPORTER={first.bdf} tphctl open exporter{first.role[8:]} ...")
    return (f"{devs}"
            f"  ssh:      rig ssh [CMD]   (127.0.0.1:{sess.ssh_port}, key {sess.client_key})\n"
            f"            in the guest: {use}  (roles: /etc/tphlab/devices)\n"
            f"  hints:    rig hints [--device ROLE] [--follow]\n"
            f"  QMP:      {sess.qmp_socket}\n"
            f"  console:  {sess.console_log}\n"
            f"  stop:     rig stop")


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
    topos = matrix.topologies()
    guest = {p.name: m.name for m in packing.pack([t for t, _ in topos]) for p in m.pairs()}
    for topo, names in topos:
        shown = ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")
        lines += [f"{topo.name}{' (rig boot default)' if topo == hint_cases.DEFAULT else ''}",
                  f"    {topo.describe()}", f"    scenarios: {shown}",
                  f"    rig run's guest: {guest[topo.name]}"]
    return "\n".join(lines)


def cmd_boot(args: argparse.Namespace) -> int:
    if args.list_topologies:
        print(list_topologies())
        return 0
    topo = matrix.topology(args.topology) if args.topology else hint_cases.DEFAULT
    no_session("rig boot")
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
          f"{accel.reason}), pid {sess.pid}\n{session_text(sess)}")
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


HINTS_HEADER = (f"{'seq':>6} {'gen':>4}  {'requester':<16}  {'offset':>10} {'length':>8}  "
                f"{'dir':<5}  hint")


def _fmt_record(r: dict[str, object], sess: boot_session.Session | None = None) -> str:
    """One hint record as `rig hints` prints it; the requester named by its role
    when it is one of the guest's tph-testdevs."""
    rid = int(str(r["requester-id"]))
    role = sess.role_of(rid) if sess is not None else None
    req = pci_address.bdf_of(rid) + (f" {role}" if role else "")
    gen = r.get("generation", "-")                 # the device's resets before it
    # A device from before reads were recorded gives no direction: writes
    direction = kit.record_direction(r)
    return (f"{r['seq']:>6} {gen:>4}  {req:<16}  {int(str(r['offset'])):#10x} {r['length']:>8}  "
            f"{direction:<5}  "
            f"TH={int(bool(r['th']))} PH={r['ph']} ST={int(str(r['st'])):#06x} "
            f"{'ext' if r['ext'] else '8-bit'}"
            + (" MALFORMED" if r.get("malformed") else ""))


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
    b = sub.add_parser("boot", help="boot the bench guest and leave it running")
    b.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto", help=kvm.ACCEL_HELP)
    b.add_argument("--topology", metavar="NAME",
                   help="boot this topology of the matrix (default: default)")
    b.add_argument("--list-topologies", action="store_true",
                   help="name the matrix's topologies, their settings and scenarios")
    b.set_defaults(func=cmd_boot)
    options.add_build_args(b)
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
