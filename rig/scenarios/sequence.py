"""tphctl's command line, built step by step: Seq().open(bdf).get().attach().dma()
gives the `tphctl -k ...` command a scenario runs in the guest. The steps are
protocol's kinds, so the builder and the parser agree on their names."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from rig.scenarios.protocol import (
    DMA_LEN,
    DMA_PATTERN,
    Attach,
    CloseDevice,
    Copy,
    CpuSt,
    CpuStUse,
    Decode,
    Detach,
    Dma,
    DmaStale,
    DmaStart,
    DmaWait,
    Fuzz,
    Get,
    Line,
    Open,
    Other,
    Probe,
    Race,
    Read,
    ReadStart,
    Reset,
    Set,
    SetRaw,
    Sleep,
    Slot,
    Status,
    TphGet,
)


@dataclass(frozen=True)
class Seq:
    """A tphctl step sequence; each step method returns the sequence one step longer."""

    args: tuple[str, ...] = ()

    def __add__(self, more: Seq) -> Seq:
        return Seq((*self.args, *more.args))

    def _then(self, kind: type[Line], *args: str) -> Seq:
        return Seq((*self.args, kind.NAME, *args))

    def command(self) -> str:
        """The guest command line: every step runs (-k) even after one fails."""
        return "tphctl -k " + shlex.join(self.args)

    def open(self, bdf: str) -> Seq:
        return self._then(Open, bdf)

    def slot(self, n: int) -> Seq:
        """The dma-buf and importer file of slot n (0..3) for the steps that follow."""
        return self._then(Slot, str(n))

    def get(self) -> Seq:
        return self._then(Get)

    def other(self, bdf: str) -> Seq:
        return self._then(Other, bdf)

    def probe(self) -> Seq:
        return self._then(Probe)

    def set(self, flags: int, st: int = 0, st_ext: int = 0, ph: int = 0) -> Seq:
        return self._then(Set, str(flags), hex(st), hex(st_ext), str(ph))

    def set_raw(self, fd: str, flags: int, st: int, st_ext: int, ph: int,
                argsz_delta: int = 0) -> Seq:
        """fd: "dmabuf", "other", "closed", "eventfd" or a number."""
        return self._then(SetRaw, fd, str(flags), hex(st), hex(st_ext), str(ph),
                          str(argsz_delta))

    def tph_get(self) -> Seq:
        return self._then(TphGet)

    def attach(self, fd: str | None = None) -> Seq:
        """fd: the dma-buf's when None, else "closed", "eventfd" or a number."""
        return self._then(Attach) if fd is None else self._then(Attach, fd)

    def dma(self, offset: int | str = 0, length: int = DMA_LEN,
            pattern: int = DMA_PATTERN) -> Seq:
        """offset: bytes, or "end" / "end-N" from the end of the attached dma-buf."""
        return self._then(Dma, str(offset), str(length), hex(pattern))

    def read(self, offset: int | str = 0, length: int = DMA_LEN) -> Seq:
        """An importer DMA that reads length bytes of the dma-buf at offset."""
        return self._then(Read, str(offset), str(length))

    def copy(self, slot: int, src_offset: int, offset: int, length: int = DMA_LEN) -> Seq:
        """An importer copy from slot `slot`'s dma-buf at src_offset into the
        current slot's at offset."""
        return self._then(Copy, str(slot), hex(src_offset), hex(offset), str(length))

    def dma_start(self, offset: int | str = 0, length: int = DMA_LEN,
                  pattern: int = DMA_PATTERN, count: int = 1) -> Seq:
        """count DMAs in one importer ioctl, in a thread; dma_wait() joins it."""
        return self._then(DmaStart, str(offset), str(length), hex(pattern), str(count))

    def read_start(self, offset: int | str = 0, length: int = DMA_LEN, count: int = 1) -> Seq:
        """count reads in one importer ioctl, in a thread; dma_wait() joins it."""
        return self._then(ReadStart, str(offset), str(length), str(count))

    def dma_stale(self, length: int = DMA_LEN, pattern: int = DMA_PATTERN) -> Seq:
        """The importer's fault: a DMA at the last DMA's address, after detach."""
        return self._then(DmaStale, str(length), hex(pattern))

    def dma_wait(self) -> Seq:
        return self._then(DmaWait)

    def sleep(self, ms: int) -> Seq:
        return self._then(Sleep, str(ms))

    def detach(self) -> Seq:
        return self._then(Detach)

    def status(self) -> Seq:
        return self._then(Status)

    def cpu_st(self, cpu: int, mem_type: int) -> Seq:
        return self._then(CpuSt, str(cpu), str(mem_type))

    def cpu_st_use(self, cpu: int, mem_type: int, ph: int) -> Seq:
        return self._then(CpuStUse, str(cpu), str(mem_type), str(ph))

    def decode(self, on: bool) -> Seq:
        return self._then(Decode, "on" if on else "off")

    def reset(self) -> Seq:
        return self._then(Reset)

    def close_device(self) -> Seq:
        return self._then(CloseDevice)

    def race(self, threads: int, queries: int) -> Seq:
        return self._then(Race, str(threads), str(queries))

    def fuzz(self, seed: int, ops: int, threads: int) -> Seq:
        return self._then(Fuzz, str(seed), str(ops), str(threads))
