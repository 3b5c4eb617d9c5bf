"""Running the scenario matrix: one boot per topology, then each case in turn."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig import hostfacts
from rig.build.artifacts import Artifacts
from rig.errors import AccelError, GuestError, RigError
from rig.guest import faults, topology
from rig.guest.kvm import FIX as KVM_FIX
from rig.guest.kvm import Accel
from rig.guest.vm import VM
from rig.scenarios import hint_cases
from rig.scenarios.kit import Bench, Scenario, Seen

EXPORTER_PATH = f"/machine/peripheral/{topology.EXPORTER_ID}"
# After each scenario, in the same SSH command (an exec costs ~60 ms under
# TCG): its dmesg, and how many dma-bufs are still alive (every one the
# scenario made dies with its process; one left is a leak). A kernel
# message that comes after this is charged to the next scenario.
AFTER_MARK = "tphlab-after-scenario"
AFTER = (f"printf '\\n%s\\n' {AFTER_MARK}; "
         "dmesg -c; echo \"tphlab-dmabufs: $(sed -n 's/^Total \\([0-9]*\\) objects.*/\\1/p' "
         "/sys/kernel/debug/dma_buf/bufinfo)\"")
_DMABUFS = re.compile(r"^tphlab-dmabufs: (\d*)$", re.M)


@dataclass
class Outcome:
    case: Scenario
    passed: bool
    seconds: float
    failures: list[str] = field(default_factory=list)
    seen: Seen = field(default_factory=lambda: Seen([]))
    dmesg: list[str] = field(default_factory=list)

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.seen.steps

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.seen.records

    @property
    def received(self) -> str:
        return self.case.received(self.seen)


@dataclass
class Run:
    accel: str
    outcomes: list[Outcome] = field(default_factory=list)
    boots: dict[str, float] = field(default_factory=dict)
    logs: Path | None = None
    accel_reason: str = ""       # why this accelerator: "auto: <finding>", "asked for ..."
    # What was tested, per component (qemu, kernel): the Source.detail() of its build
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)


def groups(cases: Sequence[Scenario]) -> list[tuple[topology.Topology, list[Scenario]]]:
    """Cases by topology, in the order topologies first appear."""
    out: list[tuple[topology.Topology, list[Scenario]]] = []
    for c in cases:
        for topo, members in out:
            if topo == c.topo:
                members.append(c)
                break
        else:
            out.append((c.topo, [c]))
    return out


def start_vm(arts: Artifacts, topo: topology.Topology, rundir: Path, accel: Accel,
             on_stage: Callable[[str, float], None] | None = None,
             timeout: float = 120.0) -> tuple[VM, Accel]:
    """Boot to SSH under `accel`; return the guest and the accelerator it runs under.

    A KVM that creates VMs and runs a few instructions can still hang a real
    guest (nested virtualization). A guest that does not reach /init under
    KVM is an AccelError (exit 2) for `--accel kvm`; under `--accel auto` it
    is retried under TCG, and the returned Accel says why (on_stage is told
    too, and rundir/kvm-fallback.txt keeps the console). A boot that fails
    leaves no QEMU behind.
    """
    vm = VM(arts, topo, rundir, accel.name)
    started = time.monotonic()
    try:
        vm.start(timeout=timeout if accel.name == "tcg" else min(timeout, 30.0),
                 on_stage=on_stage)
        return vm, accel
    except RigError as exc:
        vm.stop()
        if accel.name != "kvm" or vm.stage not in ("qemu", "kernel"):
            raise
        stage = vm.stage
        if not accel.auto:
            raise AccelError(f"--accel kvm: the guest ({topo.name}) did not reach /init under "
                             f"KVM (last boot stage: {stage}): {exc.message}",
                             log=exc.log or str(vm.console), fix=KVM_FIX) from exc
        note = rundir / "kvm-fallback.txt"
        note.write_text(f"KVM boot failed at stage {stage}; using TCG.\n{exc.message}\n")
        accel = accel.fallen_back(f"the guest ({topo.name}) did not reach /init under KVM "
                                  f"(last boot stage: {stage}; console in {note}); "
                                  "fell back to TCG")
        if on_stage:
            on_stage(f"KVM failed, falling back to TCG ({accel.reason})",
                     time.monotonic() - started)
    vm = VM(arts, topo, rundir / "tcg", "tcg")
    try:
        vm.start(timeout=timeout, on_stage=on_stage)
    except RigError:
        vm.stop()
        raise
    return vm, accel


def parse_steps(stdout: str) -> tuple[list[dict[str, Any]], list[str]]:
    """tphctl's JSON step lines, and the lines that began as one but do not
    parse (a process killed mid-line)."""
    steps, garbled = [], []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                steps.append(json.loads(line))
            except json.JSONDecodeError:
                garbled.append(line)
    return steps, garbled


def find_bdf(pci: list[dict[str, Any]], qdev_id: str) -> str:
    """The guest address QEMU's query-pci reports for a device id."""

    def walk(bus: int, devices: list[dict[str, Any]]) -> str | None:
        for d in devices:
            if d.get("qdev_id") == qdev_id:
                return f"0000:{bus:02x}:{d['slot']:02x}.{d['function']}"
            bridge = d.get("pci_bridge")
            if bridge and bridge.get("devices"):
                found = walk(bridge["bus"]["secondary"], bridge["devices"])
                if found:
                    return found
        return None

    for root in pci:
        found = walk(root["bus"], root["devices"])
        if found:
            return found
    raise GuestError(f"QEMU reports no PCI device {qdev_id!r}",
                     fix="check the topology's -device lines in the run's cmdline file")


def bind_devices(vm: VM, clear_log: bool = False) -> Bench:
    """Give the exporter (and the spare) to vfio-pci and the importer to tph_importer.

    A report in dmesg from booting or binding is an error. clear_log: empty
    dmesg after reading it (a scenario run, whose checks read what each
    scenario added); a guest left to the user keeps its boot log.
    """
    assert vm.shell is not None
    pci = vm.qmp_cmd("query-pci")
    bench = Bench(find_bdf(pci, topology.EXPORTER_ID), find_bdf(pci, topology.IMPORTER_ID),
                  find_bdf(pci, topology.SPARE_ID) if vm.topo.spare else None)
    res = vm.shell.run(f"tphlab-bind {bench.exporter} {bench.importer} {bench.spare or ''}",
                       timeout=30)
    if res.rc != 0:
        raise GuestError(f"binding the bench devices failed: {res.stderr.strip()}",
                         fix="check the guest kernel has vfio-pci and tph_importer")
    dmesg = "dmesg -c" if clear_log else "dmesg"
    splats = hint_cases.dmesg_splats(vm.shell.run(dmesg, timeout=10).stdout)
    if splats:
        raise GuestError("the guest's kernel reported problems while booting and binding:\n"
                         + "\n".join(f"    {ln}" for ln in splats), log=str(vm.console))
    return bench


def split_after(stdout: str) -> tuple[str, str]:
    """A scenario command's output: (the scenario's own, AFTER's).

    AFTER's mark starts on a line of its own even when the scenario's last
    line was cut short. The last mark counts: a scenario may print anything.
    No mark (the guest shell died first): all is the scenario's.
    """
    own, mark, after = stdout.rpartition(f"\n{AFTER_MARK}\n")
    return (own, after) if mark else (stdout, "")


def after_checks(output: str) -> tuple[list[str], list[str]]:
    """(dmesg splats, failures) from the AFTER command's output."""
    splats = hint_cases.dmesg_splats(output)
    failures = [f"dmesg: {ln}" for ln in splats]
    m = _DMABUFS.search(output)
    if m is None or not m.group(1):
        failures.append("could not count live dma-bufs (is debugfs mounted in the guest?)")
    elif int(m.group(1)):
        failures.append(f"{m.group(1)} dma-buf(s) still alive after the scenario: a leak")
    return splats, failures


def run_case(vm: VM, case: Scenario, bench: Bench, timeout: float = 60.0) -> Outcome:
    assert vm.shell is not None
    started = time.monotonic()
    vm.qmp_cmd("x-tph-hints-clear", path=EXPORTER_PATH)
    snapshots: list[list[dict[str, Any]]] = []

    def read_hints() -> None:
        snapshots.append(vm.qmp_cmd("x-query-tph-hints", path=EXPORTER_PATH)["records"])

    # `;` binds loosest: AFTER runs whatever the scenario's command list did.
    res = vm.shell.run(f"{case.command(bench)}; {AFTER}", timeout=timeout, on_pause=read_hints)
    out, after_out = split_after(res.stdout)
    steps, garbled = parse_steps(out)
    seen = Seen(steps, snapshots, hint_cases.requester_id(bench.importer))
    splats, after = after_checks(after_out)
    failures = [f"a step's output was cut short: {ln[:200]}" for ln in garbled]
    failures += case.check(seen)
    if res.stderr.strip():
        failures.append(f"stderr: {res.stderr.strip()}")
    failures += after
    return Outcome(case, not failures, time.monotonic() - started, failures, seen, splats)


@dataclass(frozen=True)
class Options:
    boot_timeout: float = 120.0        # seconds from QEMU's start to SSH
    case_timeout: float = 60.0         # seconds for one scenario's guest command
    fault: str | None = None           # see faults.FAULTS
    jobs: int | None = None            # guests booted side by side


def run_group(topo: topology.Topology, members: list[Scenario], arts: Artifacts,
              accel: Accel, rundir: Path, report: Callable[[Outcome], None] | None = None,
              on_stage: Callable[[str, str, float], None] | None = None,
              opts: Options = Options()) -> tuple[Accel, float, list[Outcome]]:
    """Boot one topology, run its cases; return the accelerator used, boot time, outcomes."""

    def stage(name: str, secs: float) -> None:
        if on_stage:
            on_stage(topo.name, name, secs)

    vm, used = start_vm(arts, faults.boot_topology(topo, opts.fault), rundir / topo.name,
                        accel, stage, opts.boot_timeout)
    outcomes: list[Outcome] = []
    try:
        bench = bind_devices(vm, clear_log=True)
        faults.inject(vm, opts.fault)
        for case in members:
            where = f"guest {topo.name}, scenario {case.name}"
            try:
                outcome = run_case(vm, case, bench, opts.case_timeout)
            except RigError as exc:
                raise faults.explain(vm, where, exc) from exc
            outcomes.append(outcome)
            if report:
                report(outcome)
            if not vm.alive():
                raise faults.explain(vm, where, RigError("QEMU is gone"))
    finally:
        vm.stop()
    return used, vm.boot_seconds, outcomes


def run_matrix(cases: Sequence[Scenario], arts: Artifacts, accel: Accel, rundir: Path,
               report: Callable[[Outcome], None] | None = None,
               on_stage: Callable[[str, str, float], None] | None = None,
               opts: Options = Options()) -> Run:
    """Boot once per topology and run its cases; the run directory keeps every log.

    Topologies run side by side, one guest per core (a TCG guest keeps one
    core busy); the outcomes keep the order of `cases`. The Run names the
    accelerator and why: TCG if any guest fell back to it (`auto`).
    """
    gs = groups(cases)
    workers = max(1, min(opts.jobs or hostfacts.jobs(), len(gs)))
    with ThreadPoolExecutor(workers, thread_name_prefix="guest") as pool:
        futures = [pool.submit(run_group, topo, members, arts, accel, rundir, report, on_stage,
                               opts)
                   for topo, members in gs]
        results = [f.result() for f in futures]
    run = Run(accel.name, logs=rundir, accel_reason=accel.reason)
    by_name: dict[str, Outcome] = {}
    fell_back: list[str] = []
    on_kvm: list[str] = []
    for (topo, _), (used, boot, outcomes) in zip(gs, results, strict=True):
        run.boots[topo.name] = boot
        if used.name != accel.name:
            fell_back.append(used.reason)
        elif used.name == "kvm":
            on_kvm.append(topo.name)
        by_name.update((o.case.name, o) for o in outcomes)
    if fell_back:
        why = [r.removeprefix("auto: ") for r in fell_back]
        if on_kvm:
            why.append(f"{', '.join(on_kvm)} ran under KVM")
        run.accel, run.accel_reason = "tcg", "auto: " + "; ".join(why)
    run.outcomes = [by_name[c.name] for c in cases if c.name in by_name]
    return run
