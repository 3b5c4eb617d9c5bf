"""Every ST mode x request width x PH, and Requester Enable 00b, ST table in cap and MSI-X.

tphimp DMAs into tphexp's BAR2; tphexp's log must hold exactly one whole
record with the hint the spec gives, and tphimp's DMA_LAST_HINT the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from rig.qdev.switch import RP0, QemuBin, SwitchRig, switch_rig
from rig.qdev.tphdev import ST_DONE, TPH_CTRL, Mode, Req, record

from .hints import MSI_BASE, MSI_DATA, ST_TABLE, expected_hint, program_st_table

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Config:
    name: str
    rp_completer: str           # the root port's x-tph-completer
    imp: dict[str, str] = field(default_factory=dict)
    req: Req = Req.EXT          # what a kernel enables: min(device, root port)

    @property
    def location(self) -> str:
        return self.imp.get("st-location", "cap")

    @property
    def ext_tph(self) -> bool:
        return self.imp.get("ext-tph", "on") == "on"


CONFIGS = [
    # Extended: ext-tph=on under a root port with Extended TPH Completer
    Config("cap-ext", "ext", {"ext-tph": "on"}, Req.EXT),
    # 8-bit because the root port completes TPH only
    Config("cap-8bit-rp-tph", "tph", {"ext-tph": "on"}, Req.TPH),
    # 8-bit because the requester has no Extended TPH
    Config("cap-8bit-ext-tph-off", "ext", {"ext-tph": "off"}, Req.TPH),
    # ST table in MSI-X Vector Control bits 31:16
    Config("msix-ext", "ext", {"ext-tph": "on", "st-location": "msix"}, Req.EXT),
    Config("msix-8bit-rp-tph", "tph", {"ext-tph": "on", "st-location": "msix"}, Req.TPH),
    Config("msix-8bit-ext-tph-off", "ext", {"ext-tph": "off", "st-location": "msix"}, Req.TPH),
]
COMPLETER_FIELD = {"none": 0, "tph": 1, "ext": 3}


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: c.name)
def hint_rig(request: pytest.FixtureRequest,
             qemu_bin: QemuBin) -> Iterator[tuple[Config, SwitchRig]]:
    cfg: Config = request.param
    with switch_rig(qemu_bin, rp_completer=cfg.rp_completer, imp=cfg.imp) as r:
        assert r.ecam.tph_completer(RP0) == COMPLETER_FIELD[cfg.rp_completer]
        program_st_table(r.imp, cfg.location, cfg.ext_tph)
        yield cfg, r


def st_index(mode: Mode, ph: int) -> int:
    """A different ST table entry for every (mode, PH) case."""
    return 4 * int(mode) + ph


@pytest.mark.parametrize("ph", range(4))
@pytest.mark.parametrize("mode", list(Mode), ids=lambda m: m.name)
@pytest.mark.parametrize("enable", ["req-on", "req-off"])
def test_dma_hint(hint_rig: tuple[Config, SwitchRig], mode: Mode, ph: int,
                  enable: str) -> None:
    cfg, r = hint_rig
    req = cfg.req if enable == "req-on" else Req.OFF
    index = st_index(mode, ph)
    # Offsets and lengths vary per case, unaligned, so pieces must coalesce
    offset = 0x1000 * index + 3 * ph + 1
    length = 61 + 16 * ph + int(mode)
    pattern = 0xC0DE0000 | index << 8 | ph
    r.imp.set_ctrl(mode, req)
    r.exp.clear_hints()
    r.imp.clear_hints()

    assert r.imp.dma(r.exp.bar2 + offset, length, pattern=pattern, index=index,
                     ph=ph) == ST_DONE

    hint = expected_hint(mode, req, ph, ST_TABLE[index])
    r.exp.assert_log([record(0, r.imp.rid, offset, length, hint)])
    r.imp.assert_log([])
    assert r.imp.last_hint() == hint.last_hint_reg
    data = [r.vm.qtest.readb(r.exp.bar2 + offset + i) for i in range(4)]
    assert data == [(pattern >> 8 * i) & 0xFF for i in range(4)]


@pytest.mark.parametrize("mode", [Mode.IV, Mode.DS], ids=lambda m: m.name)
def test_completion_vector(hint_rig: tuple[Config, SwitchRig], mode: Mode) -> None:
    """IV: the ST and the completion interrupt are the vector DMA_ST_INDEX; DS: vector 0."""
    cfg, r = hint_rig
    index = 6                  # unmasked in both locations
    vector = index if mode is Mode.IV else 0
    r.imp.set_ctrl(mode, cfg.req)
    r.exp.clear_hints()
    for v in (0, index):
        r.vm.qtest.writel(MSI_BASE + 4 * v, 0)

    assert r.imp.dma(r.exp.bar2, 16, index=index, ph=1, irq=True) == ST_DONE

    hint = expected_hint(mode, cfg.req, 1, ST_TABLE[index])
    r.exp.assert_log([record(0, r.imp.rid, 0, 16, hint)])
    for v in (0, index):
        want = MSI_DATA + v if v == vector else 0
        assert r.vm.qtest.readl(MSI_BASE + 4 * v) == want, f"vector {v}"


def test_hint_follows_st_table_update(hint_rig: tuple[Config, SwitchRig]) -> None:
    """The ST is read when the DMA runs: a rewritten entry is used by the next DMA."""
    cfg, r = hint_rig
    index, new = 13, 0x5E7A
    r.imp.set_ctrl(Mode.DS, cfg.req)
    try:
        if cfg.location == "cap":
            r.imp.set_st_entry(index, new)
        else:
            r.imp.set_msix_entry(index, MSI_BASE + 4 * index, MSI_DATA + index, new << 16 | 1)
        r.exp.clear_hints()
        assert r.imp.dma(r.exp.bar2 + 0x40, 8, index=index, ph=2) == ST_DONE
        stored = new if cfg.ext_tph else new & 0xFF
        r.exp.assert_log([record(0, r.imp.rid, 0x40, 8,
                                 expected_hint(Mode.DS, cfg.req, 2, stored))])
    finally:
        program_st_table(r.imp, cfg.location, cfg.ext_tph)


def test_extended_request_needs_ext_tph(hint_rig: tuple[Config, SwitchRig]) -> None:
    """Requester Enable 11b is taken only with ext-tph=on.

    Without it the write is refused: 01b stays and hints stay 8-bit.
    """
    cfg, r = hint_rig
    index = 9
    r.imp.set_ctrl(Mode.DS, Req.TPH)
    r.imp.ecam.write32(r.imp.bdf, TPH_CTRL, int(Mode.DS) | int(Req.EXT) << 8)
    req = Req.EXT if cfg.ext_tph else Req.TPH
    assert r.imp.ctrl() == int(Mode.DS) | int(req) << 8
    r.exp.clear_hints()
    assert r.imp.dma(r.exp.bar2, 8, index=index, ph=3) == ST_DONE
    r.exp.assert_log([record(0, r.imp.rid, 0, 8,
                             expected_hint(Mode.DS, req, 3, ST_TABLE[index]))])


@pytest.mark.parametrize("mode", list(Mode), ids=lambda m: m.name)
def test_no_prefix(hint_rig: tuple[Config, SwitchRig], mode: Mode) -> None:
    """DMA_CMD NO_PREFIX with Requester Enable 11b sends ST[7:0] without the
    TPH TLP Prefix (11b permits Extended TPH, it does not require it); with
    01b, and in NS mode, it changes nothing."""
    cfg, r = hint_rig
    index = 10 + int(mode)
    r.imp.set_ctrl(mode, cfg.req)
    r.exp.clear_hints()
    assert r.imp.dma(r.exp.bar2 + 0x80, 24, index=index, ph=3, no_prefix=True) == ST_DONE
    hint = expected_hint(mode, cfg.req, 3, ST_TABLE[index], no_prefix=True)
    assert not hint.ext
    if mode is not Mode.NS:
        assert hint.st == ST_TABLE[index] & 0xFF
    r.exp.assert_log([record(0, r.imp.rid, 0x80, 24, hint)])
    assert r.imp.last_hint() == hint.last_hint_reg
    # The choice is per DMA: the next one without NO_PREFIX is extended again
    r.exp.clear_hints()
    assert r.imp.dma(r.exp.bar2 + 0x80, 24, index=index, ph=3) == ST_DONE
    r.exp.assert_log([record(0, r.imp.rid, 0x80, 24,
                             expected_hint(mode, cfg.req, 3, ST_TABLE[index]))])
