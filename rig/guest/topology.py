"""The bench's QEMU topology as data, and the command line it becomes.

Default (design): one root port with TPH Completer, a switch behind it,
the exporter and the importer on two downstream ports, so the guest's
p2pdma distance between them is a bus address; virtio-net for SSH.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

EXPORTER_ID = "tphexp"
IMPORTER_ID = "tphimp"
SPARE_ID = "tphspare"
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

    def with_(self, **changes: object) -> Topology:
        return replace(self, **changes)  # type: ignore[arg-type]


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


def device_args(topo: Topology, tph_devices: bool) -> list[str]:
    """The PCI devices: the switch with both endpoints, then the NIC."""
    rp = "pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1,addr=0x4"
    if tph_devices and topo.root_port_completer != "none":
        rp += f",x-tph-completer={topo.root_port_completer}"
    args = ["-device", rp,
            "-device", "x3130-upstream,id=up0,bus=rp0",
            "-device", "xio3130-downstream,id=dn0,bus=up0,addr=0x0,chassis=2,slot=0",
            "-device", "xio3130-downstream,id=dn1,bus=up0,addr=0x1,chassis=3,slot=0"]
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
    accel = ["-accel", "kvm", "-cpu", "host"] if boot.accel == "kvm" else [
        "-accel", "tcg", "-cpu", TCG_CPU]
    return [
        str(boot.qemu), "-machine", "q35", *accel, "-L", str(boot.datadir),
        "-bios", str(boot.bios),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-smp", str(topo.cpus), "-m", str(topo.memory_mb),
        "-kernel", str(boot.kernel), "-initrd", str(boot.initrd), "-append", append,
        "-serial", f"file:{boot.console_log}",
        "-qmp", f"unix:{boot.qmp_socket},server=on,wait=off",
        *device_args(topo, tph_devices),
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{boot.ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=net0,bus=pcie.0,addr=0x3,romfile=",
    ]
