"""A booted guest's tph-testdevs: where QEMU put them, and binding them to their
drivers (the exporter and the spare to vfio-pci, the importer to tph_importer)
with the guest's DEVICES_FILE listing them by role."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from rig.errors import GuestError
from rig.guest import kernel_log, topology
from rig.guest.interface import GuestVM
from rig.guest.topology import Device, Topology


@dataclass(frozen=True)
class Bench:
    """The booted guest's devices, by their guest PCI addresses."""

    exporter: str             # bound to vfio-pci, the dma-buf exporter
    importer: str             # bound to tph_importer
    spare: str | None = None  # a second vfio-pci device, where the topology has one

    def devices(self) -> list[Device]:
        """Its tph-testdevs by role (as the guest's /etc/tphlab/devices lists them)."""
        bdfs = {"exporter": self.exporter, "importer": self.importer, "spare": self.spare}
        return [Device(role, qom_id, bdf) for role, qom_id in topology.ROLES.items()
                if (bdf := bdfs[role]) is not None]

    def spare_for(self, scenario: str, topo: Topology) -> str:
        if self.spare is None:
            raise ValueError(f"{scenario}: topology {topo.name} has no spare device")
        return self.spare


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


def devices_command(bench: Bench) -> str:
    """The guest command that writes topology.DEVICES_FILE for `bench`."""
    path = topology.DEVICES_FILE
    text = topology.devices_text(bench.devices())
    return (f"mkdir -p {shlex.quote(path.rpartition('/')[0])} && "
            f"printf %s {shlex.quote(text)} > {shlex.quote(path)}")


def bench_of(vm: GuestVM) -> Bench:
    """The guest's tph-testdevs by role, at the addresses QEMU reports."""
    pci = vm.qmp_cmd("query-pci")
    return Bench(find_bdf(pci, topology.EXPORTER_ID), find_bdf(pci, topology.IMPORTER_ID),
                 find_bdf(pci, topology.SPARE_ID) if vm.topo.spare else None)


def bind_command(bench: Bench, vfio: str = "noiommu") -> str:
    """The guest command that binds the bench's devices, lists them by role and
    says how tphctl opens them through VFIO (topology.VFIO_PATH_FILE)."""
    return (f"tphlab-bind {bench.exporter} {bench.importer} {bench.spare or ''} && "
            f"{devices_command(bench)} && "
            f"echo {shlex.quote(vfio)} > {shlex.quote(topology.VFIO_PATH_FILE)}")


def bind_devices(vm: GuestVM, clear_log: bool = False) -> Bench:
    """Give the exporter (and the spare) to vfio-pci and the importer to tph_importer,
    and list them by role in the guest's /etc/tphlab/devices (`ROLE BDF QOMID`
    lines: `tphctl open exporter`).

    A report in dmesg from booting or binding is an error. clear_log: empty
    dmesg after reading it (a scenario run, whose checks read what each
    scenario added); a guest left to the user keeps its boot log.
    """
    shell = vm.shell
    assert shell is not None
    bench = bench_of(vm)
    res = shell.run(bind_command(bench, vm.topo.vfio), timeout=30)
    if res.rc != 0:
        raise GuestError(f"binding the bench devices failed: {res.stderr.strip()}",
                         fix="check the guest kernel has vfio-pci and tph_importer "
                             "(a module that did not load says why on the console)",
                         log=str(vm.console))
    dmesg = "dmesg -c" if clear_log else "dmesg"
    splats = kernel_log.dmesg_splats(shell.run(dmesg, timeout=10).stdout)
    if splats:
        raise GuestError("the guest's kernel reported problems while booting and binding:\n"
                         + "\n".join(f"    {ln}" for ln in splats), log=str(vm.console))
    return bench

