"""CPU Steering Tags from firmware: the host bridge's _DSM function 0xF.

The cpu-st-dsm topology gives the q35 host bridge a Steering Tag per CPU
and memory type (x-tph-cpu-st). The importer asks the kernel for each with
pcie_tph_get_cpu_st(), which evaluates that _DSM, and must get exactly the
tags given, of the namespace its device is enabled for; then it DMAs with
one CPU's tag, which must reach the wire.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from rig.guest.devices import Bench
from rig.guest.topology import Topology
from rig.scenarios.findings import dma, wire
from rig.scenarios.hint_cases import DEFAULT, Case, Hint, TphSet
from rig.scenarios.kit import Seen, received_from
from rig.scenarios.protocol import ST, ST_EXT, CpuSt
from rig.scenarios.sequence import Seq
from rig.scenarios.tphctl_output import Steps

VOLATILE, PERSISTENT = 0, 1
REQ_EXT = 3                      # TPH Requester Enable 11b: 16-bit tags


@dataclass(frozen=True)
class MemTags:
    """One memory type's tags of a CPU; None: firmware reports none valid."""

    st: int | None
    xst: int | None

    def bits(self) -> int:
        """The 32 bits of the _DSM's result for this memory type."""
        return (int(self.st is not None) | int(self.xst is not None) << 1
                | (self.st or 0) << 8 | (self.xst or 0) << 16)


@dataclass(frozen=True)
class CpuTags:
    volatile: MemTags
    persistent: MemTags

    def dsm_value(self) -> int:
        """What function 0xF of the _DSM returns for this CPU (8 bytes)."""
        return self.volatile.bits() | self.persistent.bits() << 32

    def tag(self, mem: int, ext: bool) -> int:
        """pcie_tph_get_cpu_st()'s tag: the valid one of the namespace, else 0."""
        m = self.volatile if mem == VOLATILE else self.persistent
        return (m.xst if ext else m.st) or 0


# CPU 1's persistent memory has no valid 16-bit tag: the kernel reports 0.
TAGS = (CpuTags(MemTags(0x31, 0x3131), MemTags(0x51, 0x5151)),
        CpuTags(MemTags(0x32, 0x3232), MemTags(0x52, None)))

CPU_ST = Topology(name="cpu-st-dsm", cpus=len(TAGS),
                  host_bridge={"x-tph-cpu-st": ":".join(f"{t.dsm_value():#x}" for t in TAGS)})


@dataclass(frozen=True)
class CpuStQuery:
    """The importer gets each CPU's tag for each memory type from firmware.

    On a topology without the _DSM (`dsm` False) every query must fail as
    Linux fails it then, with -EINVAL.
    """

    name: str = "cpu-st-query"
    topo: Topology = CPU_ST
    dsm: bool = True
    busy_vcpus: int = 1        # one CPU's tags at a time, from one thread

    @property
    def summary(self) -> str:
        if not self.dsm:
            return ("no _DSM function 0xF on the host bridge (QEMU's default): "
                    "pcie_tph_get_cpu_st() fails with EINVAL")
        return ("pcie_tph_get_cpu_st() for each CPU and memory type returns the tag the "
                "host bridge's _DSM was given (16-bit: the importer is enabled for it)")

    def _queries(self) -> list[tuple[int, int]]:
        return [(cpu, mem) for cpu in range(self.topo.cpus) for mem in (VOLATILE, PERSISTENT)]

    def _want(self, cpu: int, mem: int) -> tuple[int, int]:
        """(pcie_tph_get_cpu_st()'s result, tag)."""
        return (0, TAGS[cpu].tag(mem, ext=True)) if self.dsm else (-errno.EINVAL, 0)

    def command(self, bench: Bench) -> str:
        seq = Seq()
        for cpu, mem in self._queries():
            seq = seq.cpu_st(cpu, mem)
        return seq.command()

    def check(self, seen: Seen) -> list[str]:
        steps = seen.read()
        bad: list[str] = []
        for i, (cpu, mem) in enumerate(self._queries()):
            got = steps.find(CpuSt, i)
            ret, want = self._want(cpu, mem)
            if got is None or got.ret != 0:
                bad.append(dma(f"CPU_ST {cpu}/{mem} failed: {got}"))
            elif (got.cpu, got.mem_type, got.tph_ret, got.req_type, got.st) != (
                    cpu, mem, ret, REQ_EXT, want):
                bad.append(wire(f"CPU {cpu} {'persistent' if mem else 'volatile'}: tag "
                                f"{got.st:#x} (query {got.tph_ret}, req_type {got.req_type}), "
                                f"expected {want:#x} (query {ret}, req_type {REQ_EXT})"))
        if seen.records:
            bad.append(wire(f"the exporter received {len(seen.records)} writes, expected none"))
        return bad

    def describe_set(self) -> str:
        return "x-tph-cpu-st " + self.topo.host_bridge.get("x-tph-cpu-st", "not set")

    def received(self, seen: Seen) -> str:
        return received_from(seen, self._received)

    def _received(self, steps: Steps) -> str:
        tags = [f"{s.st:#x}" if s.tph_ret == 0 else f"err {s.tph_ret}"
                for s in steps.every(CpuSt)]
        return "tags " + " ".join(tags) if tags else "nothing"


def cases() -> list[CpuStQuery | Case]:
    cpu, mem, ph = 1, VOLATILE, 2
    tag = TAGS[cpu].tag(mem, ext=True)
    return [
        CpuStQuery("cpu-st-without-dsm", DEFAULT, dsm=False),
        CpuStQuery(),
        Case("cpu-st-dma", f"the importer DMAs with CPU {cpu}'s volatile-memory tag from "
             "the _DSM instead of the exporter's: that tag reaches the wire", topo=CPU_ST,
             sets=(TphSet(ST | ST_EXT, st=0x11, st_ext=0x1111, ph=1),),
             use_cpu_st=(cpu, mem, ph), wire=Hint(tag, ph, True)),
    ]


__all__ = ["CPU_ST", "TAGS", "CpuStQuery", "CpuTags", "MemTags", "cases"]
