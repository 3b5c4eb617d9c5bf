"""What every scenario shares: what the runner gives it and what it must answer.

A scenario names its topology, the guest command it runs (almost always
one `tphctl` sequence), and checks what came back: the JSON line of each
step, and the exporter's hint log as QMP reported it at each `pause`.
"""

from __future__ import annotations

import errno
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rig.guest.topology import Topology

ST = 1 << 0        # VFIO_DMA_BUF_TPH_ST
ST_EXT = 1 << 1    # VFIO_DMA_BUF_TPH_ST_EXT
DMA_LEN = 64
DMA_PATTERN = 0xA5A5A5A5


@dataclass(frozen=True)
class Bench:
    """The booted guest's devices, by their guest PCI addresses."""

    exporter: str             # bound to vfio-pci, the dma-buf exporter
    importer: str             # bound to tph_importer
    spare: str | None = None  # a second vfio-pci device, where the topology has one


@dataclass
class Seen:
    """What a scenario's command produced."""

    steps: list[dict[str, Any]]
    snapshots: list[list[dict[str, Any]]] = field(default_factory=list)  # hint log per pause
    rid: int = 0                                                          # importer's ID

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.snapshots[-1] if self.snapshots else []


class Scenario(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str: ...

    @property
    def topo(self) -> Topology: ...

    def command(self, bench: Bench) -> str:
        """The shell command run in the guest; `pause` steps snapshot the hint log."""
        ...

    def check(self, seen: Seen) -> list[str]:
        """Every way what was seen differs from what the scenario expects."""
        ...

    def describe_set(self) -> str:
        """What userspace did, for the report's "set" column."""
        ...

    def received(self, seen: Seen) -> str:
        """What came back, for the report's "received" column."""
        ...


def tphctl(steps: list[str]) -> str:
    return "tphctl -k " + shlex.join(steps)


def errname(num: int | None) -> str:
    if num is None:
        return "no result"
    return errno.errorcode.get(num, str(num)) if num else "success"


def step(steps: list[dict[str, Any]], name: str, nth: int = 0) -> dict[str, Any] | None:
    """The nth step called `name`, or None."""
    found = [s for s in steps if s.get("step") == name]
    return found[nth] if len(found) > nth else None


def expect_ok(steps: list[dict[str, Any]], name: str, nth: int = 0) -> list[str]:
    st = step(steps, name, nth)
    if st is None:
        return [f"{name} #{nth + 1} did not run"]
    if st["ret"] != 0:
        return [f"{name} #{nth + 1} failed with {errname(st['errno'])}: {st}"]
    return []


def expect_errno(steps: list[dict[str, Any]], name: str, want: int, nth: int = 0) -> list[str]:
    st = step(steps, name, nth)
    got = st["errno"] if st else None
    if got != want:
        return [f"{name} #{nth + 1} gave {errname(got)}, expected {errname(want)}"]
    return []


def hint_of(record: dict[str, Any]) -> tuple[bool, int, int, bool]:
    """(TH, ST, PH, extended) of one hint-log record."""
    return bool(record["th"]), int(record["st"]), int(record["ph"]), bool(record["ext"])


@dataclass(frozen=True)
class Scripted:
    """A scenario written as a tphctl sequence and a function that checks it."""

    name: str
    summary: str
    did: str                                   # what userspace does, for the report
    steps: Callable[[Bench], list[str]]
    verify: Callable[[Seen], list[str]]
    topo: Topology

    def command(self, bench: Bench) -> str:
        return tphctl(self.steps(bench))

    def check(self, seen: Seen) -> list[str]:
        return self.verify(seen)

    def describe_set(self) -> str:
        return self.did

    def received(self, seen: Seen) -> str:
        return hints_summary(seen.records)


def hints_summary(records: list[dict[str, Any]]) -> str:
    if not records:
        return "nothing"
    parts = []
    for r in records:
        th, st, ph, ext = hint_of(r)
        parts.append(f"TH=1 PH={ph} ST={st:#x} {'ext' if ext else '8-bit'}" if th else "no hint")
        parts[-1] += f" x{r['length']}B"
    return "; ".join(parts)
