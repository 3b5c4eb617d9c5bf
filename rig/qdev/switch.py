"""The bench's switch topology under qtest, enumerated and assigned as firmware would.

pcie.0 -- rp0 (00:04.0) -- up0 -- dn0 -- tphexp (exporter: the recorder)
                                 \\-- dn1 -- tphimp (importer: the requester)
optionally tphrc, a root complex integrated endpoint at 00:05.3.

Bus numbers are not the ones a BIOS would pick, so that a requester ID
built from the devfn alone, or from a wrong bus, shows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rig.guest import topology
from rig.qdev.pci import Bdf, Ecam, Window
from rig.qdev.qtest import QtestQemu, qtest_qemu
from rig.qdev.tphdev import ID_VALUE, REG_ID, TphDev

RP0 = Bdf(0x00, 4)
UP0 = Bdf(0x10, 0)
DN0 = Bdf(0x11, 0)
DN1 = Bdf(0x11, 1)
EXP = Bdf(0x20, 0)
IMP = Bdf(0x3A, 0)
RC = Bdf(0x00, 5, 3)

MEM = 0xE000_0000                  # 32-bit non-prefetchable: the BAR0s
PREF = 0x8_0000_0000               # 64-bit prefetchable, above 4 GiB: the BAR2s
MiB = 1 << 20

EXP_ID = topology.EXPORTER_ID
IMP_ID = topology.IMPORTER_ID
RC_ID = "tphrc"


@dataclass(frozen=True)
class QemuBin:
    qemu: Path
    datadir: Path


@dataclass
class SwitchRig:
    vm: QtestQemu
    ecam: Ecam
    exp: TphDev
    imp: TphDev
    rc: TphDev | None


def _props(props: Mapping[str, str]) -> str:
    return "".join(f",{k}={v}" for k, v in props.items())


@contextlib.contextmanager
def switch_rig(qb: QemuBin, *, rp_completer: str = "ext",
               exp: Mapping[str, str] | None = None, imp: Mapping[str, str] | None = None,
               rc: Mapping[str, str] | None = None) -> Iterator[SwitchRig]:
    """QEMU with the bench topology (rig.topology), configured and ready for DMA.

    `exp`/`imp` are the properties of tphexp/tphimp (default: the bench's);
    `rc` adds tphrc on pcie.0 with those properties.
    """
    topo = topology.Topology(root_port_completer=rp_completer)
    if exp is not None:
        topo = topo.with_(exporter=dict(exp))
    if imp is not None:
        topo = topo.with_(importer=dict(imp))
    args = topology.device_args(topo, True)
    devices = [val for opt, val in zip(args[::2], args[1::2], strict=True) if opt == "-device"]
    if rc is not None:
        devices.append(f"tph-testdev,id={RC_ID},bus=pcie.0,addr=05.3{_props(rc)}")
    with qtest_qemu(qb.qemu, qb.datadir, devices) as vm:
        ecam = Ecam(vm.qtest)
        ecam.enable()
        ecam.setup_bridge(RP0, UP0.bus, 0x3F, Window(MEM, MEM + 2 * MiB - 1),
                          Window(PREF, PREF + 2 * MiB - 1))
        ecam.setup_bridge(UP0, DN0.bus, 0x3F, Window(MEM, MEM + 2 * MiB - 1),
                          Window(PREF, PREF + 2 * MiB - 1))
        ecam.setup_bridge(DN0, EXP.bus, EXP.bus, Window(MEM, MEM + MiB - 1),
                          Window(PREF, PREF + MiB - 1))
        ecam.setup_bridge(DN1, IMP.bus, IMP.bus, Window(MEM + MiB, MEM + 2 * MiB - 1),
                          Window(PREF + MiB, PREF + 2 * MiB - 1))
        devs = [TphDev(vm, ecam, EXP, EXP_ID, MEM, PREF),
                TphDev(vm, ecam, IMP, IMP_ID, MEM + MiB, PREF + MiB)]
        if rc is not None:
            devs.append(TphDev(vm, ecam, RC, RC_ID, MEM + 2 * MiB, PREF + 2 * MiB))
        for d in devs:
            assert ecam.read32(d.bdf, 0) == 0x0015_1B36, f"no tph-testdev at {d.bdf}"
            ecam.set_bar32(d.bdf, 0, d.bar0)
            ecam.set_bar64(d.bdf, 2, d.bar2)
            ecam.enable_mem_master(d.bdf)
            d.msix_enable()
            assert d.reg(REG_ID) == ID_VALUE, f"{d.id}: BAR0 does not answer"
        yield SwitchRig(vm, ecam, devs[0], devs[1], devs[2] if rc is not None else None)
