"""The bench's QEMU topology as data, and the command line it becomes.

Default (design): one root port with TPH Completer, a switch behind it,
the exporter and the importer on two downstream ports, so the guest's
p2pdma distance between them is a bus address; virtio-net for SSH.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from rig.guest import pci_address

EXPORTER_ID = "tphexp"
IMPORTER_ID = "tphimp"
SPARE_ID = "tphspare"
# Each tph-testdev's role, and its QOM id (its path: /machine/peripheral/ID).
ROLES = {"exporter": EXPORTER_ID, "importer": IMPORTER_ID, "spare": SPARE_ID}
# In the guest: one line per tph-testdev, "ROLE BDF QOMID", written when the
# rig binds them (tphctl takes a role for a BDF through it).
DEVICES_FILE = "/etc/tphlab/devices"
# TCG: "max" gives the guest RDRAND (dropbear does not wait for entropy).
# Without LA57: an interrupt that arrives while early boot re-reads the CPU
# features can see 5-level paging off for a moment, and KASAN then reports
# a wild-memory-access on the (5-level) direct map (seen once in 18 debug
# boots, in start_kernel, before any driver). 4-level paging avoids it.
TCG_CPU = "max,la57=off"
BASE_APPEND = ["console=ttyS0", "quiet", "panic=-1"]
# Without an IOMMU, VFIO runs in no-IOMMU mode (which taints the kernel).
NOIOMMU_APPEND = ["vfio.enable_unsafe_noiommu_mode=1"]
# With one: QEMU's intel-iommu, switched on in the guest, and no no-IOMMU
# mode. With interrupt remapping, as deployments have it: VFIO refuses a
# device whose MSIs cannot be isolated. xAPIC mode (eim=off): one or two
# vCPUs need no x2APIC. Under KVM interrupt remapping needs QEMU's
# split irqchip (IOMMU_KVM_MACHINE).
IOMMU_DEVICE = "intel-iommu,intremap=on,eim=off"
IOMMU_KVM_MACHINE = "q35,kernel-irqchip=split"
IOMMU_APPEND = ["intel_iommu=on"]
# How userspace opens a vfio-pci device: tphctl reads it from this file
# (see guest-image/tphctl.c), which the rig writes when it binds the devices.
VFIO_PATH_FILE = "/etc/tphlab/vfio"
VFIO_PATHS = ("noiommu", "type1", "iommufd")
# Under TCG a vCPU runs only when the host gives it a core: with other
# guests or builds on the machine, RCU and the soft-lockup watchdog would
# report stalls that say nothing about the code under test. Their timeouts
# go to the maximum (a real hang is caught by the scenario's own timeout).
# For the same reason the boot's check that the timer interrupt arrives
# through the IO-APIC is skipped: on a loaded machine an IOMMU guest (its
# IO-APIC behind interrupt remapping) panicked with "timer doesn't work
# through Interrupt-remapped IO-APIC" while another job held a core.
TCG_APPEND = ["rcupdate.rcu_cpu_stall_timeout=300", "rcupdate.rcu_task_stall_timeout=0",
              "watchdog_thresh=60", "no_timer_check"]


@dataclass(frozen=True)
class Topology:
    name: str = "default"
    root_port_completer: str = "ext"          # x-tph-completer of rp0: none|tph|ext
    exporter: dict[str, str] = field(default_factory=lambda: {"tph-completer": "ext"})
    importer: dict[str, str] = field(default_factory=lambda: {"ext-tph": "on"})
    append: tuple[str, ...] = ()               # extra kernel command line words
    memory_mb: int = 512
    spare: bool = False                        # a third tph-testdev, for vfio-pci
    spare_props: dict[str, str] = field(default_factory=dict)   # its properties
    cpus: int = 1
    # "switch": the endpoints behind a switch under a root port; "rciep":
    # both on pcie.0, Root Complex Integrated Endpoints (no root port);
    # "rootports": each endpoint below a root port of its own (rp0: the
    # exporter's, rp1: the importer's; the spare's rp2), so their
    # peer-to-peer path crosses the Root Complex; "multifunction": both
    # functions of one device below rp0 (exporter 0, importer 1), which no
    # ACS separates.
    placement: Literal["switch", "rciep", "rootports", "multifunction"] = "switch"
    # The CPU model, when the topology needs one: p2pdma between devices on
    # the host bridge needs a CPU its whitelist takes (AMD Zen: EPYC).
    cpu_model: str | None = None
    # Switch ports (rp0, up0, dn0: the exporter's, dn1: the importer's)
    # created without End-End TLP Prefix support (x-eetlp-prefix=off).
    no_prefix_ports: tuple[str, ...] = ()
    # Properties of the q35 host bridge (-global q35-pcihost.K=V), e.g. the
    # CPUs' TPH Steering Tags its _DSM reports (x-tph-cpu-st).
    host_bridge: dict[str, str] = field(default_factory=dict)
    # A guest IOMMU (QEMU's intel-iommu, intel_iommu=on): VFIO opens the
    # exporter through `vfio` (type1 or iommufd); without one, no-IOMMU.
    iommu: bool = False
    vfio: Literal["noiommu", "type1", "iommufd"] = "noiommu"
    # The switch's downstream ports with ACS (xio3130-downstream
    # disable-acs=off): Linux then puts the endpoints in IOMMU groups of
    # their own and redirects their peer-to-peer requests to the Root Complex.
    switch_acs: bool = False
    # A packed machine (rig.guest.packing): the placements it holds, each
    # its devices and ports with ids of its own, on the machine-wide
    # settings above. Empty: the topology is its machine's one placement.
    placements: tuple[Topology, ...] = ()

    def with_(self, **changes: object) -> Topology:
        return replace(self, **changes)  # type: ignore[arg-type]

    def roles(self) -> list[str]:
        """The roles of its tph-testdevs, in ROLES' order."""
        return [r for r in ROLES if r != "spare" or self.spare]

    def pairs(self) -> tuple[Topology, ...]:
        """The placements its machine holds: its own, or a packed machine's."""
        return self.placements or (self,)

    def suffix(self, machine: Topology) -> str:
        """What this placement's ids (QOM ids, roles, port ids) end with in
        `machine`: nothing when it is the machine's only placement."""
        return f".{self.name}" if machine.placements else ""

    def qom_ids(self, machine: Topology) -> dict[str, str]:
        """Its tph-testdevs' QOM ids in `machine`, by role."""
        return {r: ROLES[r] + self.suffix(machine) for r in self.roles()}

    def describe(self) -> str:
        """Its settings, as the QEMU properties and kernel words they become."""
        parts = [f"root port completer {self.root_port_completer}",
                 "exporter" + _props(self.exporter).replace(",", " "),
                 "importer" + _props(self.importer).replace(",", " ")]
        if self.spare:
            parts.append("a spare" + _props(self.spare_props).replace(",", " "))
        if self.append:
            parts.append("kernel " + " ".join(self.append))
        if self.cpus != 1:
            parts.append(f"{self.cpus} vCPUs")
        if self.placement != "switch":
            parts.append(f"endpoints as {self.placement.upper()}s on pcie.0")
        if self.cpu_model:
            parts.append(f"CPU {self.cpu_model}")
        if self.no_prefix_ports:
            parts.append("no End-End TLP Prefixes on " + ", ".join(self.no_prefix_ports))
        if self.host_bridge:
            parts.append("host bridge" + _props(self.host_bridge).replace(",", " "))
        if self.placement == "rootports":
            parts.append("endpoints below root ports of their own")
        if self.placement == "multifunction":
            parts.append("exporter and importer functions 0 and 1 of one device")
        if self.switch_acs:
            parts.append("switch downstream ports with ACS")
        if self.iommu:
            parts.append(f"IOMMU (intel-iommu), VFIO {self.vfio}")
        if self.placements:
            parts = [f"{len(self.placements)} placements: "
                     + ", ".join(p.name for p in self.placements)]
        return "; ".join(parts)

    def check(self) -> None:
        """ValueError naming the setting that cannot be: a VFIO path the IOMMU
        setting does not allow, ACS on a switch this placement has not."""
        if self.iommu == (self.vfio == "noiommu"):
            raise ValueError(f"topology {self.name}: VFIO {self.vfio} "
                             f"{'with' if self.iommu else 'without'} an IOMMU; use "
                             f"{'type1 or iommufd' if self.iommu else 'noiommu'}")
        if self.switch_acs and self.placement != "switch":
            raise ValueError(f"topology {self.name}: switch_acs needs placement \"switch\"")


@dataclass(frozen=True)
class Device:
    """A tph-testdev of a booted guest: its role, QOM id and guest PCI address."""

    role: str
    qom_id: str
    bdf: str

    @property
    def qom_path(self) -> str:
        return f"/machine/peripheral/{self.qom_id}"

    @property
    def requester_id(self) -> int | None:
        """Its requester ID (bus << 8 | device << 3 | function); None for no BDF."""
        try:
            return pci_address.requester_id(self.bdf)
        except ValueError:
            return None


def devices_text(devices: list[Device]) -> str:
    """DEVICES_FILE's contents."""
    lines = ["# ROLE BDF QOMID: the bench's tph-testdevs (written by the rig)"]
    lines += [f"{d.role} {d.bdf} {d.qom_id}" for d in devices]
    return "\n".join(lines) + "\n"


def parse_devices(text: str) -> list[Device]:
    """DEVICES_FILE's lines back as Devices (comments and blank lines skipped)."""
    out = []
    for ln in text.splitlines():
        words = ln.split()
        if len(words) == 3 and not words[0].startswith("#"):
            out.append(Device(words[0], words[2], words[1]))
    return out


@dataclass(frozen=True)
class Boot:
    qemu: Path
    bios: Path
    datadir: Path
    kernel: Path
    initrd: Path
    accel: str                 # "kvm" or "tcg"
    ssh_port: int
    qmp_socket: Path
    console_log: Path


def _props(props: dict[str, str]) -> str:
    return "".join(f",{k}={v}" for k, v in sorted(props.items()))


@dataclass
class _Layout:
    """Where the next placement of a machine goes: its first slot on pcie.0
    and its first chassis number (each root and downstream port has its own)."""

    slot: int = 4
    chassis: int = 1


def _rciep_args(topo: Topology, tph_devices: bool, layout: _Layout, sfx: str) -> list[str]:
    """Both endpoints (and the spare) on the root bus: RCiEPs, no port between."""
    base, layout.slot = layout.slot, layout.slot + 4
    if not tph_devices:
        return []
    ends = [(EXPORTER_ID, topo.exporter), (IMPORTER_ID, topo.importer)]
    if topo.spare:
        ends.append((SPARE_ID, topo.spare_props))
    return [a for n, (qom, props) in enumerate(ends)
            for a in ("-device", f"tph-testdev,id={qom}{sfx},bus=pcie.0,addr={base + 1 + n:#x}"
                                 f"{_props(props)}")]


# The ports of the switch topology, by id
SWITCH_PORTS = ("rp0", "up0", "dn0", "dn1")


# The ports of the rootports topology, by id
ROOT_PORTS = ("rp0", "rp1", "rp2")


def _ports_of(topo: Topology) -> tuple[str, ...]:
    return {"switch": SWITCH_PORTS, "rootports": ROOT_PORTS, "rciep": (),
            "multifunction": ("rp0",)}[topo.placement]


def _root_port(topo: Topology, pid: str, layout: _Layout, tph_devices: bool) -> str:
    """A pcie-root-port on the layout's next slot of pcie.0 and chassis, with the
    topology's completer."""
    rp = (f"pcie-root-port,id={pid},bus=pcie.0,chassis={layout.chassis},"
          f"slot={layout.chassis},addr={layout.slot:#x}")
    layout.slot += 1
    layout.chassis += 1
    if tph_devices and topo.root_port_completer != "none":
        rp += f",x-tph-completer={topo.root_port_completer}"
    return rp


def _rootports_args(topo: Topology, tph_devices: bool, layout: _Layout, sfx: str,
                    port: Callable[[str, str], str]) -> list[str]:
    """Each endpoint below a root port of its own: rp0 exporter, rp1 importer, rp2 spare."""
    roles = [("rp0", EXPORTER_ID, topo.exporter), ("rp1", IMPORTER_ID, topo.importer)]
    if topo.spare:
        roles.append(("rp2", SPARE_ID, topo.spare_props))
    args: list[str] = []
    for pid, _, _ in roles:
        args += ["-device", port(_root_port(topo, pid + sfx, layout, tph_devices), pid)]
    if tph_devices:
        for pid, qom, props in roles:
            args += ["-device", f"tph-testdev,id={qom}{sfx},bus={pid}{sfx}{_props(props)}"]
    return args


def _multifunction_args(topo: Topology, tph_devices: bool, layout: _Layout, sfx: str,
                        port: Callable[[str, str], str]) -> list[str]:
    """Exporter and importer as functions 0 and 1 of one device below rp0."""
    if topo.spare:
        raise ValueError(f"topology {topo.name}: a multifunction placement has no spare")
    args = ["-device", port(_root_port(topo, f"rp0{sfx}", layout, tph_devices), "rp0")]
    if tph_devices:
        args += ["-device", f"tph-testdev,id={EXPORTER_ID}{sfx},bus=rp0{sfx},addr=0x0.0,"
                            f"multifunction=on{_props(topo.exporter)}",
                 "-device", f"tph-testdev,id={IMPORTER_ID}{sfx},bus=rp0{sfx},addr=0x0.1"
                            f"{_props(topo.importer)}"]
    return args


def _switch_args(topo: Topology, tph_devices: bool, layout: _Layout, sfx: str,
                 port: Callable[[str, str], str]) -> list[str]:
    """A switch below a root port: the exporter on dn0, the importer on dn1, the spare
    on dn2."""
    # Our series' property (upstream's xio3130-downstream has no ACS)
    acs = ",disable-acs=off" if topo.switch_acs and tph_devices else ""
    args = ["-device", port(_root_port(topo, f"rp0{sfx}", layout, tph_devices), "rp0"),
            "-device", port(f"x3130-upstream,id=up0{sfx},bus=rp0{sfx}", "up0")]
    downs = [("dn0", EXPORTER_ID, topo.exporter), ("dn1", IMPORTER_ID, topo.importer)]
    if topo.spare:
        downs.append(("dn2", SPARE_ID, topo.spare_props))
    for n, (pid, _, _) in enumerate(downs):
        spec = (f"xio3130-downstream,id={pid}{sfx},bus=up0{sfx},addr={n:#x},"
                f"chassis={layout.chassis},slot=0{acs}")
        layout.chassis += 1
        # (the spare's port keeps End-End TLP Prefix support: no topology clears it)
        args += ["-device", port(spec, pid) if pid != "dn2" else spec]
    if tph_devices:
        args += [a for pid, qom, props in downs
                 for a in ("-device", f"tph-testdev,id={qom}{sfx},bus={pid}{sfx}"
                                      f"{_props(props)}")]
    return args


def _placement_args(topo: Topology, tph_devices: bool, layout: _Layout, sfx: str) -> list[str]:
    """One placement's ports and tph-testdevs, on the layout's next slots."""
    unknown = set(topo.no_prefix_ports) - set(_ports_of(topo))
    if topo.placement == "rciep" and unknown:
        raise ValueError(f"topology {topo.name}: RCiEPs have no ports to clear End-End TLP "
                         f"Prefix support on ({', '.join(sorted(unknown))}); use "
                         "placement \"switch\" or no no_prefix_ports")
    if topo.placement == "rciep":
        return _rciep_args(topo, tph_devices, layout, sfx)
    if unknown:
        raise ValueError(f"topology {topo.name}: no {topo.placement} port "
                         f"{', '.join(sorted(unknown))}; the ports are "
                         f"{', '.join(_ports_of(topo))}")

    def port(spec: str, pid: str) -> str:
        off = tph_devices and pid in topo.no_prefix_ports
        return spec + (",x-eetlp-prefix=off" if off else "")

    build = {"rootports": _rootports_args, "multifunction": _multifunction_args,
             "switch": _switch_args}[topo.placement]
    return build(topo, tph_devices, layout, sfx, port)


def device_args(topo: Topology, tph_devices: bool) -> list[str]:
    """The PCI devices: the IOMMU first (QEMU wants it before the devices it
    translates for), then each placement's ports and endpoints (a switch with
    both endpoints, RCiEPs, root ports...), each on pcie.0 slots of its own."""
    topo.check()
    for p in topo.placements:
        p.check()
    iommu = ["-device", IOMMU_DEVICE] if topo.iommu else []
    layout = _Layout()
    return iommu + [a for p in topo.pairs()
                    for a in _placement_args(p, tph_devices, layout, p.suffix(topo))]


def qemu_argv(boot: Boot, topo: Topology, tph_devices: bool = True) -> list[str]:
    append = " ".join([*BASE_APPEND, *(IOMMU_APPEND if topo.iommu else NOIOMMU_APPEND),
                       *(TCG_APPEND if boot.accel != "kvm" else []), *topo.append])
    default_cpu = "host" if boot.accel == "kvm" else TCG_CPU
    machine = IOMMU_KVM_MACHINE if topo.iommu and boot.accel == "kvm" else "q35"
    accel = ["-accel", "kvm" if boot.accel == "kvm" else "tcg",
             "-cpu", topo.cpu_model or default_cpu]
    # Only our series has these properties, like the devices
    host = [a for k, v in sorted(topo.host_bridge.items()) if tph_devices
            for a in ("-global", f"q35-pcihost.{k}={v}")]
    return [
        str(boot.qemu), "-machine", machine, *accel, "-L", str(boot.datadir),
        "-bios", str(boot.bios),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-smp", str(topo.cpus), "-m", str(topo.memory_mb),
        "-kernel", str(boot.kernel), "-initrd", str(boot.initrd), "-append", append,
        "-serial", f"file:{boot.console_log}",
        "-qmp", f"unix:{boot.qmp_socket},server=on,wait=off",
        *host, *device_args(topo, tph_devices),
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{boot.ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=net0,bus=pcie.0,addr=0x3,romfile=",
    ]
