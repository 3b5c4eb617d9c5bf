"""A root port without TPH Completer (x-tph-completer=none).

There a kernel refuses to enable TPH (pcie_enable_tph() takes the root
port's TPH Completer field, 00b means no). The device itself does not look
at the root port: per docs/specs/tph-testdev.rst the hint is chosen from
its own TPH Control and ST table when the DMA runs, and BAR2 records every
write from any requester whatever its own tph-completer says. So hints
programmed directly in config space still go out, exactly as enabled.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rig.qdev.switch import DN0, DN1, RP0, UP0, QemuBin, SwitchRig, switch_rig
from rig.qdev.tphdev import ST_DONE, Mode, Req, record

from .hints import ST_TABLE, expected_hint, program_st_table

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rig(qemu_bin: QemuBin) -> Iterator[SwitchRig]:
    with switch_rig(qemu_bin, rp_completer="none", exp={"tph-completer": "none"},
                    imp={"ext-tph": "on"}) as r:
        program_st_table(r.imp, "cap", ext_tph=True)
        yield r


def test_nothing_advertises_tph_completer(rig: SwitchRig) -> None:
    """What a kernel sees: TPH Completer Supported 00b on the whole path."""
    for bdf in (RP0, UP0, DN0, DN1, rig.exp.bdf, rig.imp.bdf):
        assert rig.ecam.tph_completer(bdf) == 0, str(bdf)


@pytest.mark.parametrize("ph", range(4))
@pytest.mark.parametrize("req", [Req.TPH, Req.EXT], ids=lambda r: r.name)
@pytest.mark.parametrize("mode", list(Mode), ids=lambda m: m.name)
def test_device_obeys_its_control_register(rig: SwitchRig, mode: Mode, req: Req,
                                           ph: int) -> None:
    index = 4 * int(mode) + ph
    rig.imp.set_ctrl(mode, req)
    rig.exp.clear_hints()
    assert rig.imp.dma(rig.exp.bar2 + 0x100 * index, 32, index=index, ph=ph) == ST_DONE
    hint = expected_hint(mode, req, ph, ST_TABLE[index])
    assert hint.th
    rig.exp.assert_log([record(0, rig.imp.rid, 0x100 * index, 32, hint)])
    assert rig.imp.last_hint() == hint.last_hint_reg
