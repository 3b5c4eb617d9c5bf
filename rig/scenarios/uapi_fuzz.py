"""The uAPI and the test importer under random concurrent use (`rig fuzz uapi`).

tphctl's fuzz step runs THREADS threads of random operations on fds they
share: dma-bufs of the exporter (any range) and of a second device, SET
and PROBE, closes, decode off and on, resets, and the importer's ATTACH,
DMA, reads, COPY, STATUS, DETACH (step_fuzz() in guest-image/tphctl.c).
Whatever the kernel answers each call is allowed; the verdict is about
what it must never do:

- a splat (KASAN, lockdep, WARN, BUG: the after-checks' dmesg), a dma-buf
  left alive once tphctl has exited (the after-checks' count), or a taint
  that appeared during the fuzz (read before and after);
- a record at the exporter that no DMA asked for: more records from the
  importer than its DMA, read and copy calls, a record from any other
  requester, or a hint that no successful SET gave.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rig.guest.devices import Bench
from rig.guest.topology import Topology
from rig.scenarios.findings import dma, health, wire
from rig.scenarios.iommu import READ_TAINT, TAINT_OOT, taint_names
from rig.scenarios.kit import Seen, received_from
from rig.scenarios.protocol import ST, ST_EXT, Fuzz, Tainted
from rig.scenarios.sequence import Seq
from rig.scenarios.tphctl_output import Steps

# Operations that must have succeeded at least once for the run to mean
# anything: a fuzz that never attached or moved data explored nothing
MUST_SUCCEED = ("get", "set", "attach", "dma")


@dataclass(frozen=True)
class UapiFuzz:
    name: str
    topo: Topology
    seed: int
    ops: int
    threads: int = 4

    @property
    def busy_vcpus(self) -> int:
        return min(self.threads, self.topo.cpus)

    @property
    def summary(self) -> str:
        return (f"{self.threads} threads run {self.ops} random uAPI and importer operations "
                f"(seed {self.seed}): no splat, leak, taint or stray record")

    def command(self, bench: Bench) -> str:
        """tphctl opens the exporter once first (no-IOMMU mode taints at that
        open), then the taint is read before and after the fuzz."""
        fuzz = Seq().open(bench.exporter)
        if bench.spare is not None:
            fuzz = fuzz.other(bench.spare)
        fuzz = fuzz.fuzz(self.seed, self.ops, self.threads)
        return (f"{Seq().open(bench.exporter).command()}; {READ_TAINT}; {fuzz.command()}; "
                f"{READ_TAINT}")

    def check(self, seen: Seen) -> list[str]:
        steps = seen.read()
        f = steps.find(Fuzz)
        if f is None:
            return [dma("the fuzz step printed no result (see its output)")]
        bad: list[str] = []
        if f.ret:
            bad.append(dma(f"decode on after the fuzz failed: {f.error}"))
        issued = sum(f.issued(op) for op in Fuzz.OPERATIONS)
        if issued != self.ops:
            bad.append(dma(f"{issued} operations ran, expected {self.ops}"))
        blind = [op for op in MUST_SUCCEED if not f.succeeded(op)]
        if blind:
            bad.append(dma(f"no {', '.join(blind)} succeeded: the fuzz explored nothing"))
        bad += _taint(steps)
        bad += stray_records(f, seen.records, seen.rid, seen.log_total)
        return bad

    def describe_set(self) -> str:
        return f"seed {self.seed}, {self.ops} operations in {self.threads} threads"

    def received(self, seen: Seen) -> str:
        return received_from(seen, _received)


def _received(steps: Steps) -> str:
    f = steps.find(Fuzz)
    if f is None:
        return "no result"
    done = ", ".join(f"{op} {f.succeeded(op)}/{f.issued(op)}" for op in Fuzz.OPERATIONS)
    return f"{done}; {len(f.sets)} distinct SETs"


def _taint(steps: Steps) -> list[str]:
    before, after = steps.find(Tainted, 0), steps.find(Tainted, 1)
    if before is None or after is None:
        return [health("/proc/sys/kernel/tainted was not read before and after the fuzz")]
    new = after.mask & ~before.mask & ~TAINT_OOT
    return [health(f"the fuzz tainted the kernel: {taint_names(new)}")] if new else []


def allowed_hints(f: Fuzz) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(ST, PH) pairs a record may carry with and without Extended TPH: those
    of a SET that succeeded (an 8-bit record: its 8-bit tag, or the low byte
    of its 16-bit one, which a requester without the prefix sends)."""
    ext: set[tuple[int, int]] = set()
    short: set[tuple[int, int]] = set()
    for row in f.sets:
        flags, st, st_ext, ph = row
        if flags & ST_EXT:
            ext.add((st_ext, ph))
            short.add((st_ext & 0xFF, ph))
        if flags & ST:
            short.add((st, ph))
    return ext, short


def stray_records(f: Fuzz, records: list[dict[str, Any]], rid: int, total: int) -> list[str]:
    """Records at the exporter that no DMA of the fuzz asked for."""
    bad: list[str] = []
    # A DMA or read is one request at the exporter, a copy two (its read of
    # the source and its write); a call that failed may still have reached it
    asked = f.issued("dma") + 2 * f.issued("copy")
    if total > asked:
        bad.append(wire(f"the exporter recorded {total} requests, the fuzz asked for at "
                        f"most {asked}"))
    others = sorted({r["requester-id"] for r in records
                     if r["requester-id"] not in (rid, 0)})
    if others:
        bad.append(wire(f"records from requester(s) {', '.join(f'{o:#06x}' for o in others)}"
                        f", which no DMA of the fuzz used"))
    ext, short = allowed_hints(f)
    invented = [r for r in records if r["requester-id"] == rid and r["th"]
                and (r["st"], r["ph"]) not in (ext if r["ext"] else short)]
    if invented:
        r = invented[0]
        bad.append(wire(f"{len(invented)} record(s) carry a hint no SET gave, e.g. ST "
                        f"{r['st']:#x} PH {r['ph']} ext {int(r['ext'])} at {r['offset']:#x}"))
    return bad
