"""Driving one tph-testdev: its TPH capability, ST table, DMA engine and hint log.

Register map and rules: docs/specs/tph-testdev.rst of the qemu-device series.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

# The DMA_STATUS bits, re-exported for the device tests
from rig.guest.dma_status import ST_BUSY as ST_BUSY
from rig.guest.dma_status import ST_DONE as ST_DONE
from rig.guest.dma_status import ST_ERR_ARG as ST_ERR_ARG
from rig.guest.dma_status import ST_ERR_DMA as ST_ERR_DMA
from rig.guest.dma_status import ST_ERR_ST as ST_ERR_ST
from rig.guest.dma_status import ST_ERROR as ST_ERROR
from rig.qdev.pci import Bdf, Ecam
from rig.qdev.qtest import QtestQemu

# Config space
MSIX_CAP = 0x60
MSIX_FLAGS_ENABLE = 0x8000
TPH_CAP = 0x100
TPH_CAP_REG = TPH_CAP + 0x4
TPH_CTRL = TPH_CAP + 0x8
TPH_ST_TABLE = TPH_CAP + 0xC

# BAR0
REG_ID = 0x00
REG_NR_VECTORS = 0x04
REG_DMA_ADDR_LO = 0x10
REG_DMA_ADDR_HI = 0x14
REG_DMA_LEN = 0x18
REG_DMA_PATTERN = 0x1C
REG_DMA_ST_INDEX = 0x20
REG_DMA_PH = 0x24
REG_DMA_ST = 0x28
REG_DMA_CMD = 0x2C
REG_DMA_STATUS = 0x30
REG_DMA_COUNT = 0x34
REG_DMA_LAST_HINT = 0x38
REG_DMA_ERROR = 0x3C    # why the last DMA failed: DMA_ERR_*
REG_DMA_SRC_LO = 0x40   # COPY's source
REG_DMA_SRC_HI = 0x44
REG_DMA_LOCAL = 0x48    # READ's offset in the device's own BAR2
REG_MSIX_SEND = 0x4C    # write a vector: signalled at once
MSIX_TABLE = 0x1000
MSIX_ENTRY_SIZE = 16

CMD_START = 0x1
CMD_IRQ = 0x2
CMD_NO_PREFIX = 0x4     # Requester Enable 11b: send ST[7:0] without the TPH TLP Prefix
CMD_READ = 0x10         # OP READ: DMA_ADDR into BAR2 at DMA_LOCAL
CMD_COPY = 0x20         # OP COPY: DMA_SRC to DMA_ADDR

# DMA_ERROR, and the dma-errors counter each one counts in
DMA_ERR_NONE = 0
DMA_ERR_ARG = 1
DMA_ERR_ST = 2
DMA_ERR_BUS_MASTER = 3
DMA_ERR_UNASSIGNED = 4
DMA_ERR_IOMMU = 5
DMA_ERR_TARGET = 6

DMA_DELAY_NS = 1000     # the engine runs this long after START (virtual clock)
ID_VALUE = 0x01485054


class Mode(enum.IntEnum):
    """ST Mode Select."""

    NS = 0
    IV = 1
    DS = 2


class Req(enum.IntEnum):
    """TPH Requester Enable."""

    OFF = 0      # 00b: no hints
    TPH = 1      # 01b: 8-bit ST, no TPH TLP Prefix
    EXT = 3      # 11b: may send the 16-bit ST with the prefix (IV, DS)


def ctrl_value(mode: Mode, req: Req) -> int:
    return int(mode) | int(req) << 8


@dataclass(frozen=True)
class Hint:
    th: bool
    ph: int
    st: int
    ext: bool

    @property
    def last_hint_reg(self) -> int:
        """This hint as DMA_LAST_HINT encodes it."""
        return (int(self.th) | self.ph << 1 | int(self.ext) << 3) | self.st << 16


NO_HINT = Hint(th=False, ph=0, st=0, ext=False)


DMA_ERROR_COUNTERS = ("arg", "st", "bus-master", "unassigned", "iommu", "target")


def dma_errors(**counts: int) -> dict[str, int]:
    """x-query-tph-hints' dma-errors, whole: the counters named (with _ for -),
    the others 0."""
    unknown = {k.replace("_", "-") for k in counts} - set(DMA_ERROR_COUNTERS)
    assert not unknown, f"no such dma-errors counter: {sorted(unknown)}"
    return {k: counts.get(k.replace("-", "_"), 0) for k in DMA_ERROR_COUNTERS}


def record(seq: int, rid: int, offset: int, length: int, hint: Hint,
           generation: int = 0, malformed: bool = False,
           direction: str = "write") -> dict[str, Any]:
    """One x-query-tph-hints record, whole, as QMP returns it; `generation`:
    the device resets before it was made; `malformed`: it arrived as a
    Malformed TLP; `direction`: "write" or "read"."""
    return {"seq": seq, "generation": generation, "requester-id": rid, "offset": offset,
            "length": length, "th": hint.th, "ph": hint.ph, "st": hint.st, "ext": hint.ext,
            "malformed": malformed, "direction": direction}


class TphDev:
    """One tph-testdev whose BARs are assigned (see rigs.SwitchRig)."""

    def __init__(self, vm: QtestQemu, ecam: Ecam, bdf: Bdf, qom_id: str, bar0: int,
                 bar2: int) -> None:
        self.vm = vm
        self.qt = vm.qtest
        self.ecam = ecam
        self.bdf = bdf
        self.id = qom_id
        self.bar0 = bar0
        self.bar2 = bar2

    @property
    def rid(self) -> int:
        return self.bdf.rid

    # Config space

    def ctrl(self) -> int:
        return self.ecam.read32(self.bdf, TPH_CTRL)

    def set_ctrl(self, mode: Mode, req: Req) -> None:
        """Write TPH Control and check the device took it."""
        self.ecam.write32(self.bdf, TPH_CTRL, ctrl_value(mode, req))
        got = self.ctrl()
        assert got == ctrl_value(mode, req), f"{self.id}: TPH Control {got:#x}"

    def tph_cap(self) -> int:
        return self.ecam.read32(self.bdf, TPH_CAP_REG)

    def st_entry(self, i: int) -> int:
        return self.ecam.read16(self.bdf, TPH_ST_TABLE + 2 * i)

    def set_st_entry(self, i: int, st: int) -> None:
        self.ecam.write16(self.bdf, TPH_ST_TABLE + 2 * i, st)

    def msix_enable(self) -> None:
        flags = self.ecam.read16(self.bdf, MSIX_CAP + 2)
        self.ecam.write16(self.bdf, MSIX_CAP + 2, flags | MSIX_FLAGS_ENABLE)

    # BAR0

    def reg(self, off: int) -> int:
        return self.qt.readl(self.bar0 + off)

    def set_reg(self, off: int, value: int) -> None:
        self.qt.writel(self.bar0 + off, value)

    def set_msix_entry(self, vector: int, addr: int, data: int, vector_ctrl: int) -> None:
        """Write MSI-X table entry `vector`; with st-location=msix, ST is vector_ctrl[31:16]."""
        base = self.bar0 + MSIX_TABLE + vector * MSIX_ENTRY_SIZE
        self.qt.writel(base, addr & 0xFFFF_FFFF)
        self.qt.writel(base + 4, addr >> 32)
        self.qt.writel(base + 8, data)
        self.qt.writel(base + 12, vector_ctrl)

    def msix_vector_ctrl(self, vector: int) -> int:
        return self.qt.readl(self.bar0 + MSIX_TABLE + vector * MSIX_ENTRY_SIZE + 12)

    def dma(self, addr: int, length: int, *, pattern: int = 0x5A5A5A5A, index: int = 0,
            ph: int = 0, st: int = 0, irq: bool = False, no_prefix: bool = False) -> int:
        """Run one DMA to bus address `addr` and return DMA_STATUS once it is done."""
        count = self.reg(REG_DMA_COUNT)
        self.set_reg(REG_DMA_ADDR_LO, addr & 0xFFFF_FFFF)
        self.set_reg(REG_DMA_ADDR_HI, addr >> 32)
        self.set_reg(REG_DMA_LEN, length)
        self.set_reg(REG_DMA_PATTERN, pattern)
        self.set_reg(REG_DMA_ST_INDEX, index)
        self.set_reg(REG_DMA_PH, ph)
        self.set_reg(REG_DMA_ST, st)
        self.set_reg(REG_DMA_CMD, CMD_START | (CMD_IRQ if irq else 0)
                     | (CMD_NO_PREFIX if no_prefix else 0))
        assert self.reg(REG_DMA_STATUS) == ST_BUSY, f"{self.id}: DMA did not start"
        self.qt.clock_step(10 * DMA_DELAY_NS)
        status = self.reg(REG_DMA_STATUS)
        assert status & (ST_BUSY | ST_DONE) == ST_DONE, f"{self.id}: DMA status {status:#x}"
        assert self.reg(REG_DMA_COUNT) == count + 1
        return status

    def last_hint(self) -> int:
        return self.reg(REG_DMA_LAST_HINT)

    def last_error(self) -> int:
        """DMA_ERROR: why the last DMA failed (DMA_ERR_*), 0 if it did not."""
        return self.reg(REG_DMA_ERROR)

    # BAR2 recorder, over QMP

    def hints(self, **args: int) -> dict[str, Any]:
        """x-query-tph-hints of this device (since=, max=)."""
        ret: dict[str, Any] = self.vm.qmp_cmd("x-query-tph-hints", path=self.id, **args)
        return ret

    def clear_hints(self) -> None:
        assert self.vm.qmp_cmd("x-tph-hints-clear", path=self.id) == {}

    def assert_log(self, records: list[dict[str, Any]], total: int | None = None,
                   dropped: int = 0, generation: int = 0, malformed: int = 0,
                   errors: dict[str, int] | None = None) -> None:
        """The whole log is exactly `records`, its counters as given and the
        device's reset generation `generation`."""
        want_total = len(records) + dropped if total is None else total
        assert self.hints() == {"records": records, "total": want_total, "dropped": dropped,
                                "malformed": malformed, "generation": generation,
                                "dma-errors": errors or dma_errors()}
