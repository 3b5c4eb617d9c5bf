"""Bad DMAs set an error status and leave QEMU running; bad properties stop QEMU at start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rig.qdev.qtest import QemuExited, qtest_qemu
from rig.qdev.switch import MEM, PREF, MiB, QemuBin, SwitchRig, switch_rig
from rig.qdev.tphdev import (
    DMA_ERR_ARG,
    DMA_ERR_BUS_MASTER,
    DMA_ERR_ST,
    DMA_ERR_UNASSIGNED,
    NO_HINT,
    ST_DONE,
    ST_ERR_ARG,
    ST_ERR_DMA,
    ST_ERR_ST,
    ST_ERROR,
    Mode,
    Req,
    dma_errors,
    record,
)

from .hints import ST_TABLE, expected_hint, program_st_table

pytestmark = pytest.mark.integration

INDEX, PH = 5, 2
HINT = expected_hint(Mode.DS, Req.EXT, PH, ST_TABLE[INDEX])


@pytest.fixture(scope="module")
def rig(qemu_bin: QemuBin) -> Iterator[SwitchRig]:
    with switch_rig(qemu_bin) as r:
        program_st_table(r.imp, "cap", ext_tph=True)
        yield r


@pytest.fixture
def imp_ds(rig: SwitchRig) -> Iterator[SwitchRig]:
    """tphimp in DS mode with extended hints, logs empty; afterwards a good DMA still works."""
    rig.imp.set_ctrl(Mode.DS, Req.EXT)
    rig.exp.clear_hints()
    rig.imp.clear_hints()
    yield rig
    assert rig.vm.alive(), rig.vm.output()
    assert rig.vm.qmp_cmd("query-status")["status"] == "running"
    rig.imp.set_ctrl(Mode.DS, Req.EXT)
    rig.exp.clear_hints()
    assert rig.imp.dma(rig.exp.bar2 + 0x40, 16, index=INDEX, ph=PH) == ST_DONE
    rig.exp.assert_log([record(0, rig.imp.rid, 0x40, 16, HINT)])


def assert_nothing_recorded(r: SwitchRig, **errors: int) -> None:
    """Neither device recorded anything; the importer's failed DMAs are
    counted as `errors` (dma-errors counters, with _ for -)."""
    r.exp.assert_log([])
    r.imp.assert_log([], errors=dma_errors(**errors))


@pytest.mark.parametrize("addr", [
    0x40_0000_0000,              # far above anything mapped
    0xD000_0000,                 # 32-bit PCI hole, below the windows
    MEM + MiB + 0x8_0000,        # inside dn1's window, behind no BAR
    PREF + 3 * MiB,              # above the prefetchable windows
], ids=hex)
def test_dma_to_unmapped_address(imp_ds: SwitchRig, addr: int) -> None:
    r = imp_ds
    assert r.imp.dma(addr, 64, index=INDEX, ph=PH) == ST_DONE | ST_ERROR | ST_ERR_DMA
    # The request went out (and was rejected): its hint is the last hint
    assert r.imp.last_hint() == HINT.last_hint_reg
    assert r.imp.last_error() == DMA_ERR_UNASSIGNED
    assert_nothing_recorded(r, unassigned=1)


def test_dma_without_bus_master_enable(imp_ds: SwitchRig) -> None:
    r = imp_ds
    r.ecam.enable_mem_master(r.imp.bdf, master=False)
    try:
        assert r.imp.dma(r.exp.bar2, 64, index=INDEX, ph=PH) == ST_DONE | ST_ERROR | ST_ERR_DMA
    finally:
        r.ecam.enable_mem_master(r.imp.bdf)
    # Nothing was sent, so there is no last hint (a rejected write has one)
    assert r.imp.last_hint() == 0
    assert r.imp.last_error() == DMA_ERR_BUS_MASTER
    assert_nothing_recorded(r, bus_master=1)


@pytest.mark.parametrize(("addr_off", "length"), [
    (0, 0),                      # length 0
    (0, MiB + 1),                # above DMA_MAX
    (None, 64),                  # address range wraps
], ids=["len0", "len-too-big", "wraps"])
def test_dma_bad_arguments(imp_ds: SwitchRig, addr_off: int | None, length: int) -> None:
    r = imp_ds
    addr = (1 << 64) - 4 if addr_off is None else r.exp.bar2 + addr_off
    assert r.imp.dma(addr, length, index=INDEX, ph=PH) == ST_DONE | ST_ERROR | ST_ERR_ARG
    assert r.imp.last_hint() == 0
    assert r.imp.last_error() == DMA_ERR_ARG
    assert_nothing_recorded(r, arg=1)


@pytest.mark.parametrize(("mode", "req", "irq"), [(Mode.DS, Req.EXT, False),
                                                  (Mode.IV, Req.EXT, False),
                                                  (Mode.IV, Req.OFF, True)],
                         ids=["DS", "IV", "IV-req-off-irq"])
def test_dma_st_index_beyond_table(imp_ds: SwitchRig, mode: Mode, req: Req, irq: bool) -> None:
    """Entry 16 of a 16-entry table (IV: vector 16 of 16) does not exist: ERR_ST
    alone when the index matters (a hint, or the completion vector in IV)."""
    r = imp_ds
    r.imp.set_ctrl(mode, req)
    assert r.imp.dma(r.exp.bar2, 64, index=16, ph=PH, irq=irq) == ST_DONE | ST_ERROR | ST_ERR_ST
    assert r.imp.last_hint() == 0
    assert r.imp.last_error() == DMA_ERR_ST
    assert_nothing_recorded(r, st=1)


@pytest.mark.parametrize("mode", [Mode.IV, Mode.DS, Mode.NS])
def test_bad_index_ignored_without_hint_or_vector(imp_ds: SwitchRig, mode: Mode) -> None:
    """Requester Enable 00b and no completion interrupt: the index is never
    used, in any mode, so the DMA goes out untagged (one rule for IV and DS)."""
    r = imp_ds
    r.imp.set_ctrl(mode, Req.OFF)
    assert r.imp.dma(r.exp.bar2, 64, index=16, ph=PH) == ST_DONE
    assert r.imp.last_hint() == 0
    r.exp.assert_log([record(0, r.imp.rid, 0, 64, NO_HINT)])
    r.exp.clear_hints()


def test_bad_length_and_index_set_one_error_bit(imp_ds: SwitchRig) -> None:
    """The first failing check wins: ERR_ARG alone, not ERR_ARG | ERR_ST."""
    r = imp_ds
    assert r.imp.dma(r.exp.bar2, 0, index=16, ph=PH) == ST_DONE | ST_ERROR | ST_ERR_ARG
    r.ecam.enable_mem_master(r.imp.bdf, master=False)
    try:
        assert r.imp.dma(r.exp.bar2, 64, index=16, ph=PH) == ST_DONE | ST_ERROR | ST_ERR_ST
    finally:
        r.ecam.enable_mem_master(r.imp.bdf)
    assert_nothing_recorded(r, arg=1, st=1)


# Invalid properties: QEMU exits at start-up with a message naming the property.

BAD_PROPERTIES = [
    ("tph-testdev", "st-table-size=0", "st-table-size must be between 1 and 64, not 0"),
    ("tph-testdev", "st-table-size=65", "st-table-size must be between 1 and 64, not 65"),
    ("tph-testdev", "st-location=msix,st-table-size=65",
     "st-table-size must be between 1 and 64, not 65"),
    ("tph-testdev", "st-location=foo", "Parameter 'st-location' does not accept value 'foo'"),
    ("tph-testdev", "st-modes=xx", "st-modes: unknown ST mode 'xx'"),
    ("tph-testdev", "st-modes=ns+xx", "st-modes: unknown ST mode 'xx'"),
    ("tph-testdev", "st-modes=iv,st-location=none", "st-modes: 'iv' needs an ST table"),
    ("tph-testdev", "hint-log-size=0", "hint-log-size must be between 1 and 65536, not 0"),
    ("tph-testdev", "hint-log-size=65537",
     "hint-log-size must be between 1 and 65536, not 65537"),
    ("tph-testdev", "tph-completer=x", "Parameter 'tph-completer' does not accept value 'x'"),
    ("pcie-root-port", "x-tph-completer=full",
     "Parameter 'x-tph-completer' does not accept value 'full'"),
]


@pytest.mark.parametrize(("driver", "props", "message"), BAD_PROPERTIES,
                         ids=[p for _, p, _ in BAD_PROPERTIES])
def test_bad_property_refused(qemu_bin: QemuBin, driver: str, props: str, message: str) -> None:
    if driver == "tph-testdev":
        devices = ["pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x6",
                   f"tph-testdev,id=bad,bus=rp1,{props}"]
    else:
        devices = [f"pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x6,{props}"]
    with pytest.raises(QemuExited) as exc, qtest_qemu(qemu_bin.qemu, qemu_bin.datadir, devices):
        pass
    assert exc.value.returncode == 1
    assert f"-device {devices[-1]}: {message}" in exc.value.output, exc.value.output


# QMP errors

QMP_ERRORS = [
    ("x-query-tph-hints", {"path": "rp0"}, "Device 'rp0' is not a tph-testdev"),
    ("x-query-tph-hints", {"path": "/machine/peripheral/dn1"},
     "Device '/machine/peripheral/dn1' is not a tph-testdev"),
    ("x-query-tph-hints", {"path": "nothing"}, "Device 'nothing' not found"),
    ("x-query-tph-hints", {"path": "/machine"}, "Device '/machine' not found"),
    ("x-query-tph-hints", {"path": ""}, "Path '' is ambiguous"),
    ("x-query-tph-hints", {}, "Parameter 'path' is missing"),
    ("x-query-tph-hints", {"path": 5}, "Invalid parameter type for 'path', expected: string"),
    ("x-query-tph-hints", {"path": "tphexp", "since": "x"}, "Parameter 'since' expects uint64"),
    ("x-query-tph-hints", {"path": "tphexp", "max": "x"}, "Parameter 'max' expects uint64"),
    ("x-query-tph-hints", {"path": "tphexp", "max": 1 << 32},
     "Parameter 'max' expects uint32_t"),
    ("x-query-tph-hints", {"path": "tphexp", "x": 1}, "Parameter 'x' is unexpected"),
    ("x-tph-hints-clear", {"path": "up0"}, "Device 'up0' is not a tph-testdev"),
    ("x-tph-hints-clear", {"path": "nothing"}, "Device 'nothing' not found"),
    ("x-tph-hints-clear", {}, "Parameter 'path' is missing"),
    ("x-tph-hints-clear", {"path": "tphexp", "since": 0}, "Parameter 'since' is unexpected"),
]


@pytest.mark.parametrize(("command", "args", "desc"), QMP_ERRORS,
                         ids=[f"{c}-{a}" for c, a, _ in QMP_ERRORS])
def test_qmp_error(rig: SwitchRig, command: str, args: dict[str, object], desc: str) -> None:
    rig.exp.clear_hints()
    rig.vm.qtest.writel(rig.exp.bar2, 1)      # one record that a bad clear must not drop
    assert rig.vm.qmp_raw(command, args) == {"error": {"class": "GenericError", "desc": desc}}
    assert rig.vm.alive()
    rig.exp.assert_log([record(0, 0, 0, 4, NO_HINT)])


@pytest.mark.parametrize("path", ["tphexp", "/machine/peripheral/tphexp"])
def test_qmp_path_forms(rig: SwitchRig, path: str) -> None:
    """The id and the QOM path name the same device."""
    rig.exp.clear_hints()
    rig.vm.qtest.writew(rig.exp.bar2 + 2, 0xBEEF)
    want = {"records": [record(0, 0, 2, 2, NO_HINT)], "total": 1,
            "dropped": 0, "malformed": 0, "generation": 0, "dma-errors": dma_errors()}
    assert rig.vm.qmp_cmd("x-query-tph-hints", path=path) == want
    assert rig.vm.qmp_cmd("x-tph-hints-clear", path=path) == {}
    assert rig.vm.qmp_cmd("x-query-tph-hints", path=path) == {
        "records": [], "total": 0, "dropped": 0, "malformed": 0, "generation": 0,
        "dma-errors": dma_errors()}
