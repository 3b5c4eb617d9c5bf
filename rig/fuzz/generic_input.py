"""Inputs of QEMU's generic-fuzz (tests/qtest/fuzz/generic_fuzz.c), written
as the fuzzer reads them, and the seed inputs for tph-testdev.

An input is a sequence of commands separated by "FUZZ"; a command's first
byte picks the operation (modulo the number of operations), the bytes after
it fill the operation's C struct (x86-64 layout, padding included). MMIO
operations pick a fuzzable MemoryRegion by index in address order, PCI
operations a fuzzable device by index (the order QOM lists them in, which
an input cannot know: the seeds address both devices alike).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from rig.qdev.tphdev import (
    CMD_COPY,
    CMD_IRQ,
    CMD_NO_PREFIX,
    CMD_READ,
    CMD_START,
    MSIX_CAP,
    REG_DMA_ADDR_HI,
    REG_DMA_ADDR_LO,
    REG_DMA_CMD,
    REG_DMA_COUNT,
    REG_DMA_ERROR,
    REG_DMA_LAST_HINT,
    REG_DMA_LEN,
    REG_DMA_LOCAL,
    REG_DMA_PATTERN,
    REG_DMA_PH,
    REG_DMA_SRC_HI,
    REG_DMA_SRC_LO,
    REG_DMA_ST,
    REG_DMA_ST_INDEX,
    REG_DMA_STATUS,
    REG_MSIX_SEND,
    TPH_CTRL,
    TPH_ST_TABLE,
)

SEPARATOR = b"FUZZ"

# enum cmds of generic_fuzz.c
OP_READ, OP_WRITE, OP_PCI_READ, OP_PCI_WRITE = 2, 3, 4, 5
OP_ADD_DMA_PATTERN, OP_CLOCK_STEP = 7, 9
SIZES = {1: 0, 2: 1, 4: 2, 8: 3}     # access width in bytes: the size field

# The fuzzable regions of a configuration's two devices, in address order:
# generic-fuzz (with our bridge set-up) places the first device's BAR0
# (registers, MSI-X table, MSI-X PBA) and BAR2 (the recording memory), then
# the second's, from 0xc0000000 (see FUZZ_BARS)
REGS, MSIX_TABLE, MSIX_PBA, MEM = 0, 1, 2, 3
REGIONS_PER_DEVICE = 4
# Where each device's BAR0 and BAR2 land: the exporter (first) and importer
# (second) of each tph-testdev configuration of generic_fuzz_configs.h
FUZZ_BARS = ((0xC000_0000, 0xC010_0000), (0xC020_0000, 0xC030_0000))
RAM_TARGET = 0x0010_0000        # main RAM, where DMA reads find fuzzer data
ECAM = 0xB000_0000              # where generic-fuzz maps q35's ECAM

OP_DMA_WRITE, OP_DMA_READ, OP_DMA_COPY = 0, CMD_READ, CMD_COPY
MSIX_CONTROL = MSIX_CAP + 2
DEVCTL = 0x88                   # Device Control of the PCIe capability (at 0x80)
TPH_ST_MODE_IV, TPH_ST_MODE_DS = 1, 2
TPH_EN, TPH_EN_EXT = 1 << 8, 3 << 8


@dataclass
class Input:
    """One generic-fuzz input, command by command."""

    commands: list[bytes] = field(default_factory=list)
    devices: int = 2

    def data(self) -> bytes:
        return SEPARATOR.join(self.commands)

    def write(self, region: int, offset: int, value: int, width: int = 4) -> Input:
        self.commands.append(struct.pack("<BBB2xIQ", OP_WRITE, SIZES[width], region, offset,
                                         value))
        return self

    def read(self, region: int, offset: int, width: int = 4) -> Input:
        self.commands.append(struct.pack("<BBB2xI", OP_READ, SIZES[width], region, offset))
        return self

    def config_write(self, offset: int, value: int, width: int = 4) -> Input:
        """The same config write to every device; offsets past 0xff reach the
        extended space through ECAM (the size byte's upper bits)."""
        size = SIZES[width] | ((offset >> 8) & 0xF) << 2
        for dev in range(self.devices):
            self.commands.append(struct.pack("<BBBBxI", OP_PCI_WRITE, size, dev, offset & 0xFF,
                                             value))
        return self

    def config_read(self, offset: int, width: int = 4) -> Input:
        size = SIZES[width] | ((offset >> 8) & 0xF) << 2
        for dev in range(self.devices):
            self.commands.append(struct.pack("<BBBB", OP_PCI_READ, size, dev, offset & 0xFF))
        return self

    def dma_pattern(self, data: bytes, index: int = 0, stride: int = 1) -> Input:
        self.commands.append(struct.pack("<BBB", OP_ADD_DMA_PATTERN, index, stride) + data)
        return self

    def step(self) -> Input:
        self.commands.append(bytes([OP_CLOCK_STEP]))
        return self

    def dma(self, dev: int, cmd: int, dst: int, length: int = 64, ph: int = 3,
            st_index: int = 0, src: int = 0, local: int = 0) -> Input:
        """Program device `dev`'s engine, start it, let it run, read the result."""
        regs = dev * REGIONS_PER_DEVICE + REGS
        for off, val in ((REG_DMA_ADDR_LO, dst & 0xFFFF_FFFF), (REG_DMA_ADDR_HI, dst >> 32),
                         (REG_DMA_LEN, length), (REG_DMA_PATTERN, 0xA5),
                         (REG_DMA_ST_INDEX, st_index), (REG_DMA_ST, 0x55), (REG_DMA_PH, ph),
                         (REG_DMA_SRC_LO, src & 0xFFFF_FFFF), (REG_DMA_SRC_HI, src >> 32),
                         (REG_DMA_LOCAL, local), (REG_DMA_CMD, cmd | CMD_START)):
            self.write(regs, off, val)
        self.step().step()
        for off in (REG_DMA_STATUS, REG_DMA_COUNT, REG_DMA_LAST_HINT, REG_DMA_ERROR):
            self.read(regs, off)
        return self.write(regs, REG_DMA_STATUS, 0xFFFF_FFFF)


def _tph_on(mode: int, enable: int, ext: bool) -> Input:
    """TPH enabled in both devices, ST table entry 0 set."""
    return Input().config_write(TPH_CTRL, mode | enable).config_write(
        TPH_ST_TABLE, 0x01A3 if ext else 0xA3, 2)


def seeds() -> dict[str, bytes]:
    """Seed inputs that reach each of the device's paths once: hinted DMA
    into the peer's recording BAR (Extended and 8-bit, with and without the
    prefix), a read and a copy from RAM, interrupts, bad arguments, a bad
    Steering Tag, DMA with bus mastering off, an FLR, IV mode."""
    exp_mem = FUZZ_BARS[0][1]
    out: dict[str, bytes] = {}
    out["ds-ext-write"] = _tph_on(TPH_ST_MODE_DS, TPH_EN_EXT, True).dma(1, OP_DMA_WRITE,
                                                                        exp_mem).data()
    out["ds-8bit-no-prefix"] = _tph_on(TPH_ST_MODE_DS, TPH_EN, False).dma(
        1, OP_DMA_WRITE | CMD_NO_PREFIX, exp_mem + 0x100, ph=1).data()
    out["ns-unhinted"] = Input().dma(1, OP_DMA_WRITE, exp_mem + 0x200, ph=0).data()
    out["read-from-ram"] = _tph_on(TPH_ST_MODE_DS, TPH_EN_EXT, True).dma_pattern(
        bytes(range(16))).dma(1, OP_DMA_READ, RAM_TARGET, length=256, local=0x40).data()
    out["copy-ram-to-peer"] = _tph_on(TPH_ST_MODE_DS, TPH_EN_EXT, True).dma_pattern(
        b"\x5a" * 8).dma(1, OP_DMA_COPY, exp_mem + 0x400, src=RAM_TARGET).data()
    out["write-own-bar"] = _tph_on(TPH_ST_MODE_DS, TPH_EN_EXT, True).dma(
        0, OP_DMA_WRITE, exp_mem + 0x800).data()
    irq = Input().config_write(MSIX_CONTROL, 0x8000, 2)
    irq.write(1 * REGIONS_PER_DEVICE + MSIX_TABLE, 0, 0xFEE0_0000)
    irq.write(1 * REGIONS_PER_DEVICE + MSIX_TABLE, 8, 0x41)
    irq.write(1 * REGIONS_PER_DEVICE + REGS, REG_MSIX_SEND, 0)
    out["msix-irq"] = irq.dma(1, OP_DMA_WRITE | CMD_IRQ, exp_mem).data()
    out["bad-args"] = Input().dma(1, OP_DMA_WRITE, exp_mem, length=0).dma(
        1, OP_DMA_WRITE, exp_mem, length=0x20_0000).data()
    out["bad-st-index"] = _tph_on(TPH_ST_MODE_DS, TPH_EN_EXT, True).dma(
        1, OP_DMA_WRITE, exp_mem, st_index=4095).data()
    out["no-bus-master"] = Input().config_write(0x04, 0x0002, 2).dma(
        1, OP_DMA_WRITE, exp_mem).data()
    out["unassigned"] = Input().dma(1, OP_DMA_WRITE, 0xD000_0000).data()
    out["flr"] = _tph_on(TPH_ST_MODE_DS, TPH_EN_EXT, True).config_write(
        DEVCTL, 0x8000, 2).dma(1, OP_DMA_WRITE, exp_mem).data()
    iv = Input().config_write(MSIX_CONTROL, 0x8000, 2).config_write(TPH_CTRL,
                                                                   TPH_ST_MODE_IV | TPH_EN)
    iv.write(1 * REGIONS_PER_DEVICE + MSIX_TABLE, 12, 0x00A3_0000)
    out["iv-msix-st"] = iv.dma(1, OP_DMA_WRITE, exp_mem, st_index=0).data()
    wraps = 0xFFFF_FFFF_FFFF_FF00
    out["arg-errors"] = Input().dma(1, 3 << 4, exp_mem).dma(1, OP_DMA_WRITE, wraps, length=0x200
                                                            ).dma(
        1, OP_DMA_COPY, exp_mem, src=wraps, length=0x200).dma(
        1, OP_DMA_READ, RAM_TARGET, length=0x200, local=0xFFF00).data()
    out["ns-mode-hinted"] = _tph_on(0, TPH_EN_EXT, True).dma(1, OP_DMA_WRITE, exp_mem).data()
    out["unaligned-hinted-read"] = _tph_on(TPH_ST_MODE_DS, TPH_EN_EXT, True).dma_pattern(
        b"\x11\x22\x33").dma(1, OP_DMA_READ, RAM_TARGET + 1, length=5).data()
    out["read-peer-hinted"] = _tph_on(TPH_ST_MODE_DS, TPH_EN_EXT, True).dma(
        1, OP_DMA_READ, exp_mem, length=16, local=0x80).data()
    # A copy whose read fails half-way: the peer's BAR read with the TPH
    # prefix on a path without End-End TLP Prefix support (no-prefix-path)
    out["copy-from-peer-malformed"] = _tph_on(TPH_ST_MODE_DS, TPH_EN_EXT, True).dma(
        1, OP_DMA_COPY, RAM_TARGET, src=exp_mem, length=32).data()
    out["copy-bad-src"] = Input().dma(1, OP_DMA_COPY, exp_mem, src=0xD000_0000).data()
    # The importer's DMA into its own Device Control through ECAM: an FLR in
    # the middle of its own DMA (its bus is 4 below the switch, 2 below rp1)
    flr = Input()
    for bus in (4, 2):
        flr.dma(1, OP_DMA_WRITE, ECAM + (bus << 20) + DEVCTL, length=2)
    out["dma-flr-self"] = flr.data()
    out["iv-bad-vector"] = Input().config_write(MSIX_CONTROL, 0x8000, 2).config_write(
        TPH_CTRL, TPH_ST_MODE_IV | TPH_EN).dma(1, OP_DMA_WRITE | CMD_IRQ, exp_mem,
                                               st_index=100).data()
    regs = Input()
    for off in range(0, 0x50, 4):
        regs.read(REGS, off)
    out["read-registers"] = regs.config_read(0x100).config_read(0x104).config_read(
        TPH_CTRL).data()
    return out


def write_seeds(directory: Path) -> list[Path]:
    """The seeds as files in `directory` (made if missing); their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in seeds().items():
        path = directory / f"seed-{name}"
        path.write_bytes(data)
        paths.append(path)
    return paths
