"""The requester ID of every record is the issuing function's bus << 8 | devfn.

Requesters: tphexp (bus 0x20), tphimp (bus 0x3a) behind the switch, and
tphrc, a root complex integrated endpoint at 00:05.3; CPU writes carry 0.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rig.qdev.pci import Bdf
from rig.qdev.switch import DN1, EXP_ID, IMP, IMP_ID, RC_ID, QemuBin, SwitchRig, switch_rig
from rig.qdev.tphdev import NO_HINT, ST_DONE, Mode, Req, TphDev, record

from .hints import ST_TABLE, expected_hint, program_st_table

pytestmark = pytest.mark.integration

NAMES = [EXP_ID, IMP_ID, RC_ID]
EXPECTED_RID = {EXP_ID: 0x2000, IMP_ID: 0x3A00, RC_ID: 0x002B}


@pytest.fixture(scope="module")
def rig(qemu_bin: QemuBin) -> Iterator[SwitchRig]:
    with switch_rig(qemu_bin, rc={}) as r:
        for d in devices(r).values():
            program_st_table(d, "cap", ext_tph=True)
            d.set_ctrl(Mode.DS, Req.EXT)
        yield r


def devices(r: SwitchRig) -> dict[str, TphDev]:
    assert r.rc is not None
    return {d.id: d for d in (r.exp, r.imp, r.rc)}


def test_requester_ids_are_bus_devfn(rig: SwitchRig) -> None:
    """The layout: rids written out, not derived, so a wrong bus or devfn shows."""
    assert {name: d.rid for name, d in devices(rig).items()} == EXPECTED_RID


@pytest.mark.parametrize("target", NAMES)
@pytest.mark.parametrize("source", NAMES)
def test_dma_record_carries_source_rid(rig: SwitchRig, source: str, target: str) -> None:
    src, dst = devices(rig)[source], devices(rig)[target]
    index = NAMES.index(source) * 3 + NAMES.index(target)
    for d in devices(rig).values():
        d.clear_hints()
    assert src.dma(dst.bar2 + 0x80 * index, 24, index=index, ph=index % 4) == ST_DONE
    hint = expected_hint(Mode.DS, Req.EXT, index % 4, ST_TABLE[index])
    for d in devices(rig).values():
        want = [record(0, EXPECTED_RID[source], 0x80 * index, 24, hint)] if d is dst else []
        d.assert_log(want)


@pytest.mark.parametrize("target", NAMES)
def test_cpu_write_has_rid_zero(rig: SwitchRig, target: str) -> None:
    dst = devices(rig)[target]
    dst.clear_hints()
    rig.vm.qtest.writel(dst.bar2 + 0x10, 0x12345678)
    rig.vm.qtest.writeq(dst.bar2 + 0x18, 0x1122334455667788)
    dst.assert_log([record(0, 0, 0x10, 4, NO_HINT), record(1, 0, 0x18, 8, NO_HINT)])
    assert rig.vm.qtest.readl(dst.bar2 + 0x10) == 0x12345678
    assert rig.vm.qtest.readq(dst.bar2 + 0x18) == 0x1122334455667788


def test_rid_follows_bus_renumbering(rig: SwitchRig) -> None:
    """Give dn1 another secondary bus: tphimp's next requests carry the new bus."""
    new_bus = IMP.bus + 1
    rig.ecam.write32(DN1, 0x18, DN1.bus | new_bus << 8 | new_bus << 16)
    try:
        assert rig.ecam.read32(Bdf(new_bus, 0), 0) == 0x0015_1B36
        rig.exp.clear_hints()
        assert rig.imp.dma(rig.exp.bar2, 8, index=1, ph=1) == ST_DONE
        rig.exp.assert_log([record(0, new_bus << 8, 0, 8,
                                   expected_hint(Mode.DS, Req.EXT, 1, ST_TABLE[1]))])
    finally:
        rig.ecam.write32(DN1, 0x18, DN1.bus | IMP.bus << 8 | IMP.bus << 16)
