"""Device figures for `rig bench`, measured on tph-testdev through qtest.

- DMA throughput into the exporter's recording BAR against the same DMAs
  into guest RAM (no MMIO dispatch, no recording): the cost of recording.
- x-query-tph-hints latency for a log of 4096 records.

Each DMA is timed from the qtest clock step that runs it to its answer, so
register programming round trips are not counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rig.qdev.switch import QemuBin, SwitchRig, switch_rig
from rig.qdev.tphdev import (
    CMD_START,
    DMA_DELAY_NS,
    REG_DMA_ADDR_HI,
    REG_DMA_ADDR_LO,
    REG_DMA_CMD,
    REG_DMA_LEN,
    REG_DMA_STATUS,
    ST_DONE,
    TphDev,
)

MiB = 1 << 20
RAM_TARGET = 32 * MiB          # inside the qtest machine's 128 MiB of RAM
QUERY_RECORDS = 4096


@dataclass(frozen=True)
class DmaRates:
    bar_mb_s: float
    ram_mb_s: float

    @property
    def ratio(self) -> float:
        """How many times slower the recording BAR is than RAM."""
        return self.ram_mb_s / self.bar_mb_s


def _timed_dma(r: SwitchRig, dev: TphDev, addr: int, length: int) -> float:
    dev.set_reg(REG_DMA_ADDR_LO, addr & 0xFFFF_FFFF)
    dev.set_reg(REG_DMA_ADDR_HI, addr >> 32)
    dev.set_reg(REG_DMA_LEN, length)
    dev.set_reg(REG_DMA_CMD, CMD_START)
    t = time.perf_counter()
    r.vm.qtest.clock_step(10 * DMA_DELAY_NS)
    took = time.perf_counter() - t
    status = dev.reg(REG_DMA_STATUS)
    if status & ST_DONE == 0:
        raise RuntimeError(f"DMA to {addr:#x} did not complete: status {status:#x}")
    dev.set_reg(REG_DMA_STATUS, status)
    return took


def dma_rates(qemu: Path, datadir: Path, count: int = 32, length: int = MiB) -> DmaRates:
    """MB/s of `count` DMAs of `length` bytes into the exporter's BAR2 and into RAM."""
    with switch_rig(QemuBin(qemu, datadir)) as r:
        bar = sum(_timed_dma(r, r.imp, r.exp.bar2, length) for _ in range(count))
        ram = sum(_timed_dma(r, r.imp, RAM_TARGET, length) for _ in range(count))
    total = count * length / 1e6
    return DmaRates(total / bar, total / ram)


def query_latency(qemu: Path, datadir: Path, runs: int = 5) -> list[float]:
    """Seconds x-query-tph-hints takes to return a log of QUERY_RECORDS records."""
    exp = {"tph-completer": "ext", "hint-log-size": str(QUERY_RECORDS)}
    with switch_rig(QemuBin(qemu, datadir), exp=exp) as r:
        for i in range(QUERY_RECORDS):
            # Offsets apart: each DMA is a record of its own
            r.imp.set_reg(REG_DMA_ADDR_LO, (r.exp.bar2 + 64 * i) & 0xFFFF_FFFF)
            r.imp.set_reg(REG_DMA_ADDR_HI, (r.exp.bar2 + 64 * i) >> 32)
            r.imp.set_reg(REG_DMA_LEN, 4)
            r.imp.set_reg(REG_DMA_CMD, CMD_START)
            r.vm.qtest.clock_step(10 * DMA_DELAY_NS)
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            got = r.exp.hints()
            samples.append(time.perf_counter() - t)
            if len(got["records"]) != QUERY_RECORDS:
                raise RuntimeError(f"the log holds {len(got['records'])} records, expected "
                                   f"{QUERY_RECORDS}")
    return samples
