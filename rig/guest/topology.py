"""The bench's QEMU topology as data, and the command line it becomes.

Default (design): one root port with TPH Completer, a switch behind it,
the exporter and the importer on two downstream ports, so the guest's
p2pdma distance between them is a bus address; virtio-net for SSH.
"""

from __future__ import annotations

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
BASE_APPEND = ["console=ttyS0", "quiet", "panic=-1", "vfio.enable_unsafe_noiommu_mode=1"]
# Under TCG a vCPU runs only when the host gives it a core: with other
# guests or builds on the machine, RCU and the soft-lockup watchdog would
# report stalls that say nothing about the code under test. Their timeouts
# go to the maximum (a real hang is caught by the scenario's own timeout).
TCG_APPEND = ["rcupdate.rcu_cpu_stall_timeout=300", "rcupdate.rcu_task_stall_timeout=0",
              "watchdog_thresh=60"]


@dataclass(frozen=True)
class Topology:
    name: str = "default"
    root_port_completer: str = "ext"          # x-tph-completer of rp0: none|tph|ext
    exporter: dict[str, str] = field(default_factory=lambda: {"tph-completer": "ext"})
    importer: dict[str, str] = field(default_factory=lambda: {"ext-tph": "on"})
    append: tuple[str, ...] = ()               # extra kernel command line words
    memory_mb: int = 512
    spare: bool = False                        # a third tph-testdev, for vfio-pci
    cpus: int = 1
    # "switch": the endpoints behind a switch under a root port; "rciep":
    # both on pcie.0, Root Complex Integrated Endpoints (no root port).
    placement: Literal["switch", "rciep"] = "switch"
    # The CPU model, when the topology needs one: p2pdma between devices on
    # the host bridge needs a CPU its whitelist takes (AMD Zen: EPYC).
    cpu_model: str | None = None
    # Switch ports (rp0, up0, dn0: the exporter's, dn1: the importer's)
    # created without End-End TLP Prefix support (x-eetlp-prefix=off).
    no_prefix_ports: tuple[str, ...] = ()
    # Properties of the q35 host bridge (-global q35-pcihost.K=V), e.g. the
    # CPUs' TPH Steering Tags its _DSM reports (x-tph-cpu-st).
    host_bridge: dict[str, str] = field(default_factory=dict)

    def with_(self, **changes: object) -> Topology:
        return replace(self, **changes)  # type: ignore[arg-type]

    def roles(self) -> list[str]:
        """The roles of its tph-testdevs, in ROLES' order."""
        return [r for r in ROLES if r != "spare" or self.spare]

    def describe(self) -> str:
        """Its settings, as the QEMU properties and kernel words they become."""
        parts = [f"root port completer {self.root_port_completer}",
                 "exporter" + _props(self.exporter).replace(",", " "),
                 "importer" + _props(self.importer).replace(",", " ")]
        if self.spare:
            parts.append("a spare")
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
        return "; ".join(parts)


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


def _rciep_args(topo: Topology, tph_devices: bool) -> list[str]:
    """Both endpoints (and the spare) on the root bus: RCiEPs, no port between."""
    if not tph_devices:
        return []
    args = ["-device", f"tph-testdev,id={EXPORTER_ID},bus=pcie.0,addr=0x5{_props(topo.exporter)}",
            "-device", f"tph-testdev,id={IMPORTER_ID},bus=pcie.0,addr=0x6{_props(topo.importer)}"]
    if topo.spare:
        args += ["-device", f"tph-testdev,id={SPARE_ID},bus=pcie.0,addr=0x7"]
    return args


# The ports of the switch topology, by id
SWITCH_PORTS = ("rp0", "up0", "dn0", "dn1")


def device_args(topo: Topology, tph_devices: bool) -> list[str]:
    """The PCI devices: the switch with both endpoints (or the RCiEPs), then the NIC."""
    unknown = set(topo.no_prefix_ports) - set(SWITCH_PORTS if topo.placement == "switch" else ())
    if topo.placement == "rciep" and unknown:
        raise ValueError(f"topology {topo.name}: RCiEPs have no ports to clear End-End TLP "
                         f"Prefix support on ({', '.join(sorted(unknown))}); use "
                         "placement \"switch\" or no no_prefix_ports")
    if topo.placement == "rciep":
        return _rciep_args(topo, tph_devices)
    if unknown:
        raise ValueError(f"topology {topo.name}: no switch port {', '.join(sorted(unknown))}; "
                         f"the ports are {', '.join(SWITCH_PORTS)}")

    def port(spec: str, pid: str) -> str:
        off = tph_devices and pid in topo.no_prefix_ports
        return spec + (",x-eetlp-prefix=off" if off else "")

    rp = "pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1,addr=0x4"
    if tph_devices and topo.root_port_completer != "none":
        rp += f",x-tph-completer={topo.root_port_completer}"
    args = ["-device", port(rp, "rp0"),
            "-device", port("x3130-upstream,id=up0,bus=rp0", "up0"),
            "-device", port("xio3130-downstream,id=dn0,bus=up0,addr=0x0,chassis=2,slot=0",
                            "dn0"),
            "-device", port("xio3130-downstream,id=dn1,bus=up0,addr=0x1,chassis=3,slot=0",
                            "dn1")]
    if topo.spare:
        args += ["-device", "xio3130-downstream,id=dn2,bus=up0,addr=0x2,chassis=4,slot=0"]
    if tph_devices:
        args += ["-device", f"tph-testdev,id={EXPORTER_ID},bus=dn0{_props(topo.exporter)}",
                 "-device", f"tph-testdev,id={IMPORTER_ID},bus=dn1{_props(topo.importer)}"]
        if topo.spare:
            args += ["-device", f"tph-testdev,id={SPARE_ID},bus=dn2"]
    return args


def qemu_argv(boot: Boot, topo: Topology, tph_devices: bool = True) -> list[str]:
    append = " ".join([*BASE_APPEND, *(TCG_APPEND if boot.accel != "kvm" else []),
                       *topo.append])
    default_cpu = "host" if boot.accel == "kvm" else TCG_CPU
    accel = ["-accel", "kvm" if boot.accel == "kvm" else "tcg",
             "-cpu", topo.cpu_model or default_cpu]
    # Only our series has these properties, like the devices
    host = [a for k, v in sorted(topo.host_bridge.items()) if tph_devices
            for a in ("-global", f"q35-pcihost.{k}={v}")]
    return [
        str(boot.qemu), "-machine", "q35", *accel, "-L", str(boot.datadir),
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
