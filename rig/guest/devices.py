"""A booted guest's tph-testdevs: where QEMU put them, and binding them to their
drivers (the exporter and the spare to vfio-pci, the importer to tph_importer)
with the guest's DEVICES_FILE listing them by role. A packed machine holds
one set of them per placement (rig.guest.packing), each with ids and roles
of its own."""

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
    # What its roles and QOM ids end with: its placement's in a packed machine
    suffix: str = ""

    def devices(self) -> list[Device]:
        """Its tph-testdevs by role (as the guest's /etc/tphlab/devices lists them)."""
        bdfs = {"exporter": self.exporter, "importer": self.importer, "spare": self.spare}
        return [Device(role + self.suffix, qom_id + self.suffix, bdf)
                for role, qom_id in topology.ROLES.items() if (bdf := bdfs[role]) is not None]

    @property
    def exporter_path(self) -> str:
        """The exporter's QOM path: where QMP reads the hints it received."""
        return f"/machine/peripheral/{topology.EXPORTER_ID}{self.suffix}"

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


@dataclass(frozen=True)
class Benches:
    """A booted machine's devices: a Bench per placement, by placement name."""

    by_placement: dict[str, Bench]

    def of(self, placement: str) -> Bench:
        try:
            return self.by_placement[placement]
        except KeyError:
            raise ValueError(f"this guest holds no placement {placement!r} (it holds "
                             f"{', '.join(self.by_placement)})") from None

    def only(self) -> Bench:
        """The Bench of a machine of one placement (`rig boot`, `rig bench`)."""
        if len(self.by_placement) != 1:
            raise ValueError(f"a packed machine holds {len(self.by_placement)} placements")
        return next(iter(self.by_placement.values()))

    def devices(self) -> list[Device]:
        return [d for b in self.by_placement.values() for d in b.devices()]


def devices_command(benches: Benches) -> str:
    """The guest command that writes topology.DEVICES_FILE for `benches`."""
    path = topology.DEVICES_FILE
    text = topology.devices_text(benches.devices())
    return (f"mkdir -p {shlex.quote(path.rpartition('/')[0])} && "
            f"printf %s {shlex.quote(text)} > {shlex.quote(path)}")


def bench_of(vm: GuestVM) -> Benches:
    """The guest's tph-testdevs by placement and role, at the addresses QEMU reports."""
    pci = vm.qmp_cmd("query-pci")
    out = {}
    for p in vm.topo.pairs():
        ids = p.qom_ids(vm.topo)
        out[p.name] = Bench(find_bdf(pci, ids["exporter"]), find_bdf(pci, ids["importer"]),
                            find_bdf(pci, ids["spare"]) if p.spare else None,
                            p.suffix(vm.topo))
    return Benches(out)


def bind_command(benches: Benches, vfio: str = "noiommu") -> str:
    """The guest command that binds the machine's devices, lists them by role and
    says how tphctl opens them through VFIO (topology.VFIO_PATH_FILE: the
    machine's way; a scenario of a packed machine names its own)."""
    binds = [f"tphlab-bind {b.exporter} {b.importer} {b.spare or ''}"
             for b in benches.by_placement.values()]
    return (f"{' && '.join(binds)} && {devices_command(benches)} && "
            f"echo {shlex.quote(vfio)} > {shlex.quote(topology.VFIO_PATH_FILE)}")


def bind_devices(vm: GuestVM, clear_log: bool = False) -> Benches:
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
    res = shell.run(bind_command(bench, vm.topo.vfio), timeout=30 * len(vm.topo.pairs()))
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

