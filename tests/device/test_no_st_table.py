"""st-location=none: DS mode takes DMA_ST, IV is not supported; No ST mode is mandatory.

The other half of "every ST mode": without an ST table the device offers
NS and DS only, and DS sends the ST of the descriptor (DMA_ST).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rig.qdev.switch import QemuBin, SwitchRig, switch_rig
from rig.qdev.tphdev import ST_DONE, TPH_CTRL, Hint, Mode, Req, ctrl_value, record

from .hints import expected_hint

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rig(qemu_bin: QemuBin) -> Iterator[SwitchRig]:
    with switch_rig(qemu_bin, imp={"ext-tph": "on", "st-location": "none"}) as r:
        # NS|DS, Extended TPH, no table (location 00b, size field 0)
        assert r.imp.tph_cap() == 0x0000_0105
        yield r


@pytest.mark.parametrize("ph", range(4))
@pytest.mark.parametrize("req", list(Req), ids=lambda r: r.name)
@pytest.mark.parametrize("mode", [Mode.NS, Mode.DS], ids=lambda m: m.name)
def test_hint_without_table(rig: SwitchRig, mode: Mode, req: Req, ph: int) -> None:
    st = (0xB0 + 4 * int(req) + ph) << 8 | (0x41 + 16 * int(req) + ph)
    rig.imp.set_ctrl(mode, req)
    rig.exp.clear_hints()
    assert rig.imp.dma(rig.exp.bar2 + 0x20, 40, st=st, index=7, ph=ph) == ST_DONE
    hint = expected_hint(mode, req, ph, st)
    rig.exp.assert_log([record(0, rig.imp.rid, 0x20, 40, hint)])
    assert rig.imp.last_hint() == hint.last_hint_reg


def test_iv_mode_refused_without_table(rig: SwitchRig) -> None:
    rig.imp.set_ctrl(Mode.DS, Req.EXT)
    rig.ecam.write32(rig.imp.bdf, TPH_CTRL, ctrl_value(Mode.IV, Req.EXT))
    assert rig.imp.ctrl() == ctrl_value(Mode.DS, Req.EXT)


def test_no_st_mode_is_always_supported(qemu_bin: QemuBin) -> None:
    """st-modes=ds still advertises No ST Mode Supported (the spec hardwires it
    to 1): the reset mode (NS) is a supported one, and a guest that only sets
    Requester Enable gets TH=1 with ST 0 and no prefix, even with 11b."""
    with switch_rig(qemu_bin, imp={"st-modes": "ds"}) as r:
        assert r.imp.tph_cap() & 0x7 == 0b101          # NS and DS, not IV
        r.imp.set_st_entry(0, 0x1234)
        r.ecam.write32(r.imp.bdf, TPH_CTRL, ctrl_value(Mode.NS, Req.EXT))
        assert r.imp.ctrl() == ctrl_value(Mode.NS, Req.EXT)
        assert r.imp.dma(r.exp.bar2, 8, index=0, ph=1) == ST_DONE
        r.exp.assert_log([record(0, r.imp.rid, 0, 8, Hint(True, 1, 0, False))])
        # IV is not supported: the write leaves the mode as it was
        r.ecam.write32(r.imp.bdf, TPH_CTRL, ctrl_value(Mode.IV, Req.EXT))
        assert r.imp.ctrl() == ctrl_value(Mode.NS, Req.EXT)
        # DS is supported and then sends the entry
        r.imp.set_ctrl(Mode.DS, Req.EXT)
        r.exp.clear_hints()
        assert r.imp.dma(r.exp.bar2, 8, index=0, ph=1) == ST_DONE
        r.exp.assert_log([record(0, r.imp.rid, 0, 8, Hint(True, 1, 0x1234, True))])
