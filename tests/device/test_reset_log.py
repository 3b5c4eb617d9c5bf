"""The hint log survives device reset: a reset bumps the generation, records keep theirs.

docs/specs/tph-testdev.rst, "Reset": FLR and a reset of the device's bus
clear the registers and BAR2 but not the log; only x-tph-hints-clear
empties it, and it leaves the generation alone. vfio-pci resets the
exporter when its device fd is released, so this is what lets the rig
read the log after tphctl exits.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rig.qdev.pci import PCI_CAP_ID_EXP
from rig.qdev.switch import DN0, QemuBin, SwitchRig, switch_rig
from rig.qdev.tphdev import NO_HINT, REG_DMA_COUNT, ST_DONE, Mode, Req, TphDev, record

from .hints import ST_TABLE, expected_hint, program_st_table

pytestmark = pytest.mark.integration

PCI_EXP_DEVCTL = 0x08
PCI_EXP_DEVCTL_BCR_FLR = 0x8000
PCI_BRIDGE_CONTROL = 0x3E
PCI_BRIDGE_CTL_BUS_RESET = 0x40


@pytest.fixture
def rig(qemu_bin: QemuBin) -> Iterator[SwitchRig]:
    with switch_rig(qemu_bin) as r:
        program_st_table(r.imp, "cap", ext_tph=True)
        r.imp.set_ctrl(Mode.DS, Req.EXT)
        yield r


def flr(dev: TphDev) -> None:
    exp = dev.ecam.find_cap(dev.bdf, PCI_CAP_ID_EXP)
    dev.ecam.write16(dev.bdf, exp + PCI_EXP_DEVCTL, PCI_EXP_DEVCTL_BCR_FLR)


def secondary_bus_reset(r: SwitchRig) -> None:
    """Reset the bus below DN0, where the exporter is."""
    ctl = r.ecam.read16(DN0, PCI_BRIDGE_CONTROL)
    r.ecam.write16(DN0, PCI_BRIDGE_CONTROL, ctl | PCI_BRIDGE_CTL_BUS_RESET)
    r.ecam.write16(DN0, PCI_BRIDGE_CONTROL, ctl)


def reassign(dev: TphDev) -> None:
    """What a driver does after a reset: BARs, Memory Space and Bus Master back."""
    dev.ecam.set_bar32(dev.bdf, 0, dev.bar0)
    dev.ecam.set_bar64(dev.bdf, 2, dev.bar2)
    dev.ecam.enable_mem_master(dev.bdf)


def dma_record(r: SwitchRig, seq: int, offset: int, generation: int) -> dict[str, object]:
    assert r.imp.dma(r.exp.bar2 + offset, 32, index=3, ph=1) == ST_DONE
    return record(seq, r.imp.rid, offset, 32, expected_hint(Mode.DS, Req.EXT, 1, ST_TABLE[3]),
                  generation)


@pytest.mark.parametrize("reset", ["flr", "bus-reset"])
def test_log_survives_reset(rig: SwitchRig, reset: str) -> None:
    r = rig
    before = dma_record(r, 0, 0x100, 0)
    r.exp.assert_log([before])

    if reset == "flr":
        flr(r.exp)
    else:
        secondary_bus_reset(r)

    # The registers and BAR2 are reset, the log is not
    reassign(r.exp)
    assert r.exp.reg(REG_DMA_COUNT) == 0
    assert r.vm.qtest.readl(r.exp.bar2 + 0x100) == 0
    r.exp.assert_log([before], generation=1)
    after = dma_record(r, 1, 0x200, 1)
    r.exp.assert_log([before, after], generation=1)


def test_resets_count_and_clear_keeps_generation(rig: SwitchRig) -> None:
    r = rig
    flr(r.exp)
    secondary_bus_reset(r)
    reassign(r.exp)
    r.exp.assert_log([], generation=2)
    r.vm.qtest.writel(r.exp.bar2, 7)
    r.exp.assert_log([record(0, 0, 0, 4, NO_HINT, 2)], generation=2)
    r.exp.clear_hints()
    r.exp.assert_log([], generation=2)
    # The importer was not reset: its generation did not move
    r.imp.assert_log([], generation=0)
