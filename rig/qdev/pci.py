"""PCI configuration through q35's ECAM, and the bridge and BAR set-up a BIOS would do.

ECAM (MMCONFIG) is off at reset: PCIEXBAR (offset 0x60 of the host bridge
00:00.0) is programmed through the legacy 0xcf8/0xcfc ports first. Above
that, every access is an MMIO access at ECAM_BASE + (bus << 20 | devfn << 12
| offset), which reaches extended config space (>= 0x100) too.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.qdev.qtest import QtestClient

ECAM_BASE = 0xB000_0000
Q35_PCIEXBAR = 0x60
PCIEXBAR_EN = 0x1                  # length field 00b: 256 buses

PCI_COMMAND = 0x04
PCI_COMMAND_MEMORY = 0x2
PCI_COMMAND_MASTER = 0x4
PCI_BASE_ADDRESS_0 = 0x10
PCI_PRIMARY_BUS = 0x18
PCI_IO_BASE = 0x1C
PCI_MEMORY_BASE = 0x20
PCI_PREF_MEMORY_BASE = 0x24
PCI_PREF_BASE_UPPER32 = 0x28
PCI_PREF_LIMIT_UPPER32 = 0x2C
PCI_CAPABILITY_LIST = 0x34
PCI_CAP_ID_EXP = 0x10
PCI_EXP_DEVCAP2 = 0x24


@dataclass(frozen=True)
class Bdf:
    bus: int
    dev: int
    fn: int = 0

    @property
    def devfn(self) -> int:
        return self.dev << 3 | self.fn

    @property
    def rid(self) -> int:
        """The PCIe requester ID: bus << 8 | devfn."""
        return self.bus << 8 | self.devfn

    def __str__(self) -> str:
        return f"{self.bus:02x}:{self.dev:02x}.{self.fn}"


@dataclass(frozen=True)
class Window:
    """A bridge memory window, limit inclusive, 1 MiB granular."""

    base: int
    limit: int


class Ecam:
    """Config space of every function, once enable() has mapped ECAM."""

    def __init__(self, qt: QtestClient, base: int = ECAM_BASE) -> None:
        self.qt = qt
        self.base = base

    def enable(self) -> None:
        """Map ECAM at `base` by writing PCIEXBAR of 00:00.0 through 0xcf8/0xcfc."""
        self.qt.outl(0xCF8, 0x8000_0000 | (Q35_PCIEXBAR + 4))
        self.qt.outl(0xCFC, self.base >> 32)
        self.qt.outl(0xCF8, 0x8000_0000 | Q35_PCIEXBAR)
        self.qt.outl(0xCFC, (self.base & 0xFFFF_FFFF) | PCIEXBAR_EN)

    def addr(self, bdf: Bdf, off: int) -> int:
        assert 0 <= off < 0x1000
        return self.base + (bdf.bus << 20 | bdf.devfn << 12 | off)

    def read32(self, bdf: Bdf, off: int) -> int:
        return self.qt.readl(self.addr(bdf, off))

    def read16(self, bdf: Bdf, off: int) -> int:
        return self.qt.readw(self.addr(bdf, off))

    def read8(self, bdf: Bdf, off: int) -> int:
        return self.qt.readb(self.addr(bdf, off))

    def write32(self, bdf: Bdf, off: int, value: int) -> None:
        self.qt.writel(self.addr(bdf, off), value)

    def write16(self, bdf: Bdf, off: int, value: int) -> None:
        self.qt.writew(self.addr(bdf, off), value)

    def write8(self, bdf: Bdf, off: int, value: int) -> None:
        self.qt.writeb(self.addr(bdf, off), value)

    def find_cap(self, bdf: Bdf, cap_id: int) -> int:
        """Offset of the first standard capability `cap_id`, 0 if none."""
        pos = self.read8(bdf, PCI_CAPABILITY_LIST) & 0xFC
        while pos:
            if self.read8(bdf, pos) == cap_id:
                return pos
            pos = self.read8(bdf, pos + 1) & 0xFC
        return 0

    def tph_completer(self, bdf: Bdf) -> int:
        """TPH Completer Supported, Device Capabilities 2 bits 13:12."""
        exp = self.find_cap(bdf, PCI_CAP_ID_EXP)
        assert exp, f"{bdf} has no PCI Express capability"
        return (self.read32(bdf, exp + PCI_EXP_DEVCAP2) >> 12) & 3

    def enable_mem_master(self, bdf: Bdf, master: bool = True) -> None:
        cmd = PCI_COMMAND_MEMORY | (PCI_COMMAND_MASTER if master else 0)
        self.write16(bdf, PCI_COMMAND, cmd)

    def setup_bridge(self, bdf: Bdf, secondary: int, subordinate: int, mem: Window,
                     pref: Window) -> None:
        """Bus numbers, windows (I/O closed), Memory Space and Bus Master Enable."""
        self.write32(bdf, PCI_PRIMARY_BUS, bdf.bus | secondary << 8 | subordinate << 16)
        self.write16(bdf, PCI_IO_BASE, 0x00F0)          # base > limit: closed
        self.write32(bdf, PCI_MEMORY_BASE,
                     (mem.base >> 16 & 0xFFF0) | (mem.limit >> 16 & 0xFFF0) << 16)
        self.write32(bdf, PCI_PREF_MEMORY_BASE,
                     (pref.base >> 16 & 0xFFF0) | (pref.limit >> 16 & 0xFFF0) << 16)
        self.write32(bdf, PCI_PREF_BASE_UPPER32, pref.base >> 32)
        self.write32(bdf, PCI_PREF_LIMIT_UPPER32, pref.limit >> 32)
        self.enable_mem_master(bdf)
        assert self.read32(bdf, PCI_PRIMARY_BUS) & 0xFFFFFF == (
            bdf.bus | secondary << 8 | subordinate << 16), f"bridge {bdf} kept no bus numbers"

    def set_bar32(self, bdf: Bdf, bar: int, addr: int) -> None:
        off = PCI_BASE_ADDRESS_0 + 4 * bar
        self.write32(bdf, off, addr)
        assert self.read32(bdf, off) & ~0xF == addr, f"{bdf} BAR{bar} not at {addr:#x}"

    def set_bar64(self, bdf: Bdf, bar: int, addr: int) -> None:
        off = PCI_BASE_ADDRESS_0 + 4 * bar
        self.write32(bdf, off, addr & 0xFFFF_FFFF)
        self.write32(bdf, off + 4, addr >> 32)
        got = (self.read32(bdf, off) & ~0xF) | self.read32(bdf, off + 4) << 32
        assert got == addr, f"{bdf} BAR{bar} not at {addr:#x}"
