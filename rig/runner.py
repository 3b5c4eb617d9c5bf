"""Running the scenario matrix: one boot per topology, then each case in turn."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig import host, scenarios, topology
from rig.errors import GuestError, RigError
from rig.vm import VM, Artifacts

EXPORTER_PATH = f"/machine/peripheral/{topology.EXPORTER_ID}"


@dataclass
class Outcome:
    case: scenarios.Case
    passed: bool
    seconds: float
    failures: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    dmesg: list[str] = field(default_factory=list)

    @property
    def received(self) -> str:
        return scenarios.received_summary(self.records)


@dataclass
class Run:
    accel: str
    outcomes: list[Outcome] = field(default_factory=list)
    boots: dict[str, float] = field(default_factory=dict)
    logs: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)


def groups(cases: list[scenarios.Case]) -> list[tuple[topology.Topology, list[scenarios.Case]]]:
    """Cases by topology, in the order topologies first appear."""
    out: list[tuple[topology.Topology, list[scenarios.Case]]] = []
    for c in cases:
        for topo, members in out:
            if topo == c.topo:
                members.append(c)
                break
        else:
            out.append((c.topo, [c]))
    return out


def start_vm(arts: Artifacts, topo: topology.Topology, rundir: Path, accel: str,
             on_stage: Callable[[str, float], None] | None = None,
             timeout: float = 120.0) -> tuple[VM, str]:
    """Boot to SSH; if KVM was chosen but the guest never reaches /init, retry under TCG.

    A KVM that creates VMs and runs a few instructions can still hang a real
    guest (nested virtualization); the fallback is reported, never silent.
    """
    vm = VM(arts, topo, rundir, accel)
    try:
        vm.start(timeout=timeout if accel == "tcg" else min(timeout, 30.0), on_stage=on_stage)
        return vm, accel
    except RigError as exc:
        if accel != "kvm" or vm.stage not in ("qemu", "kernel"):
            raise
        vm.stop()
        note = rundir / "kvm-fallback.txt"
        note.write_text(f"KVM boot failed at stage {vm.stage}; using TCG.\n{exc.message}\n")
        if on_stage:
            on_stage("kvm failed, falling back to tcg", 0.0)
    vm = VM(arts, topo, rundir / "tcg", "tcg")
    vm.start(timeout=timeout, on_stage=on_stage)
    return vm, "tcg"


def parse_steps(stdout: str) -> list[dict[str, Any]]:
    steps = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            steps.append(json.loads(line))
    return steps


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


def bind_devices(vm: VM) -> tuple[str, str]:
    """Give the exporter to vfio-pci and the importer to tph_importer."""
    assert vm.shell is not None
    pci = vm.qmp_cmd("query-pci")
    exporter = find_bdf(pci, topology.EXPORTER_ID)
    importer = find_bdf(pci, topology.IMPORTER_ID)
    res = vm.shell.run(f"tphlab-bind {exporter} {importer}", timeout=30)
    if res.rc != 0:
        raise GuestError(f"binding the bench devices failed: {res.stderr.strip()}",
                         fix="check the guest kernel has vfio-pci and tph_importer")
    return exporter, importer


def run_case(vm: VM, case: scenarios.Case, exporter: str, importer: str) -> Outcome:
    assert vm.shell is not None
    started = time.monotonic()
    vm.qmp_cmd("x-tph-hints-clear", path=EXPORTER_PATH)
    vm.shell.run("dmesg -c > /dev/null", timeout=10)
    cmd = "tphctl -k " + shlex.join(case.tphctl_steps(exporter))
    records: list[dict[str, Any]] = []

    def read_hints() -> None:
        records.extend(vm.qmp_cmd("x-query-tph-hints", path=EXPORTER_PATH)["records"])

    res = vm.shell.run(cmd, timeout=30, on_pause=read_hints)
    steps = parse_steps(res.stdout)
    dmesg = scenarios.dmesg_splats(vm.shell.run("dmesg -c", timeout=10).stdout)
    failures = scenarios.check(case, steps, records, scenarios.requester_id(importer))
    if res.stderr.strip():
        failures.append(f"tphctl: {res.stderr.strip()}")
    failures += [f"dmesg: {ln}" for ln in dmesg]
    return Outcome(case, not failures, time.monotonic() - started, failures, steps, records,
                   dmesg)


def run_group(topo: topology.Topology, members: list[scenarios.Case], arts: Artifacts,
              accel: str, rundir: Path, report: Callable[[Outcome], None] | None = None,
              on_stage: Callable[[str, str, float], None] | None = None
              ) -> tuple[str, float, list[Outcome]]:
    """Boot one topology, run its cases; return the accelerator used, boot time, outcomes."""

    def stage(name: str, secs: float) -> None:
        if on_stage:
            on_stage(topo.name, name, secs)

    vm, used = start_vm(arts, topo, rundir / topo.name, accel, stage)
    outcomes: list[Outcome] = []
    try:
        exporter, importer = bind_devices(vm)
        for case in members:
            outcome = run_case(vm, case, exporter, importer)
            outcomes.append(outcome)
            if report:
                report(outcome)
            if not vm.alive():
                raise GuestError(f"QEMU died during scenario {case.name}", log=str(vm.console))
    finally:
        vm.stop()
    return used, vm.boot_seconds, outcomes


def run_matrix(cases: list[scenarios.Case], arts: Artifacts, accel: str, rundir: Path,
               report: Callable[[Outcome], None] | None = None,
               on_stage: Callable[[str, str, float], None] | None = None,
               jobs: int | None = None) -> Run:
    """Boot once per topology and run its cases; the run directory keeps every log.

    Topologies run side by side, one guest per core (a TCG guest keeps one
    core busy); the outcomes keep the order of `cases`.
    """
    gs = groups(cases)
    workers = max(1, min(jobs or host.jobs(), len(gs)))
    with ThreadPoolExecutor(workers, thread_name_prefix="guest") as pool:
        futures = [pool.submit(run_group, topo, members, arts, accel, rundir, report, on_stage)
                   for topo, members in gs]
        results = [f.result() for f in futures]
    run = Run(accel, logs=rundir)
    by_name: dict[str, Outcome] = {}
    for (topo, _), (used, boot, outcomes) in zip(gs, results, strict=True):
        run.boots[topo.name] = boot
        if used != accel:
            run.accel = used
        by_name.update((o.case.name, o) for o in outcomes)
    run.outcomes = [by_name[c.name] for c in cases if c.name in by_name]
    return run
