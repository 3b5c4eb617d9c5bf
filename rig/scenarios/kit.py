"""What every scenario shares: what the runner gives it and what it must answer.

A scenario names its topology, the guest command it runs (almost always
one `tphctl` sequence, built with rig.scenarios.protocol), and checks what
came back: the JSON line of each step, read as protocol records, and the
exporter's hint log as QMP reported it after the command exited (the log
survives the reset vfio-pci does when the command releases the device;
each record carries the device's reset generation).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rig.guest.devices import Bench
from rig.guest.topology import Topology
from rig.scenarios.findings import Finding, contract, dma
from rig.scenarios.protocol import (
    Probe,
    ProtocolError,
    Result,
    Set,
    SetRaw,
    TphGet,
    hint_text,
)
from rig.scenarios.sequence import Seq
from rig.scenarios.tphctl_output import Steps


@dataclass
class Seen:
    """What a scenario's command produced."""

    steps: list[dict[str, Any]]
    records: list[dict[str, Any]] = field(default_factory=list)  # exporter's log, after
    rid: int = 0                                                  # importer's ID
    output: str = ""                          # the command's own stdout, as it came
    # The exporter's count of its own failed DMAs, by reason (x-query-tph-hints)
    dma_errors: dict[str, Any] = field(default_factory=dict)
    # How many requests the exporter recorded since the scenario began, the
    # records its log no longer holds included (x-query-tph-hints' total)
    log_total: int = 0

    def read(self) -> Steps:
        """The steps as records; ProtocolError names a missing or malformed field."""
        return Steps(self.steps)


class Scenario(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str: ...

    @property
    def topo(self) -> Topology: ...

    @property
    def busy_vcpus(self) -> int:
        """How many of its guest's vCPUs it keeps busy at once (its share of the
        machine's budget, rig.guest.budget): 1 for a single-threaded sequence."""
        ...

    def command(self, bench: Bench) -> str:
        """The shell command run in the guest; the rig reads the hint log after it."""
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


def errname(num: int | None) -> str:
    if num is None:
        return "no result"
    return errno.errorcode.get(num, str(num)) if num else "success"


# The steps of the series' uAPI (VFIO_DEVICE_FEATURE_DMA_BUF_TPH): their
# errno is its contract. Every other step's outcome is the transfer's.
CONTRACT_STEPS: tuple[type[Result], ...] = (Probe, Set, SetRaw, TphGet)


def step_finding(kind: type[Result], text: str, want: int | None, got: int | None) -> Finding:
    """A step that did not end as expected: a contract difference for a step
    of the series' uAPI (the errno the reference gives, the one seen), else
    the transfer's."""
    if issubclass(kind, CONTRACT_STEPS):
        return contract(text, errname(want), errname(got))
    return dma(text)


def expect_ok(steps: Steps, kind: type[Result], nth: int = 0) -> list[str]:
    st = steps.find(kind, nth)
    if st is None:
        return [dma(f"{kind.NAME} #{nth + 1} did not run")]
    if st.ret != 0:
        return [step_finding(kind, f"{kind.NAME} #{nth + 1} failed with {errname(st.errno)}: "
                             f"{st}", 0, st.errno)]
    return []


def expect_errno(steps: Steps, kind: type[Result], want: int, nth: int = 0) -> list[str]:
    st = steps.find(kind, nth)
    if st is None:
        return [dma(f"{kind.NAME} #{nth + 1} did not run")]
    if st.errno != want:
        return [step_finding(kind, f"{kind.NAME} #{nth + 1} gave {errname(st.errno)}, "
                             f"expected {errname(want)}", want, st.errno)]
    return []


def received_from(seen: Seen, what: Callable[[Steps], str]) -> str:
    """The "received" text `what` makes of the steps, or why they could not be read."""
    try:
        return what(seen.read())
    except ProtocolError as exc:
        return f"unreadable: {exc.message}"


def hint_of(record: dict[str, Any]) -> tuple[bool, int, int, bool]:
    """(TH, ST, PH, extended) of one hint-log record."""
    return bool(record["th"]), int(record["st"]), int(record["ph"]), bool(record["ext"])


@dataclass(frozen=True)
class Scripted:
    """A scenario written as a tphctl sequence and a function that checks it."""

    name: str
    summary: str
    did: str                                   # what userspace does, for the report
    steps: Callable[[Bench], Seq]
    verify: Callable[[Seen], list[str]]
    topo: Topology
    busy_vcpus: int = 1

    def command(self, bench: Bench) -> str:
        return self.steps(bench).command()

    def check(self, seen: Seen) -> list[str]:
        return self.verify(seen)

    def describe_set(self) -> str:
        return self.did

    def received(self, seen: Seen) -> str:
        return hints_summary(seen.records)


def record_direction(r: Mapping[str, Any]) -> str:
    """"write" or "read": the direction of an x-query-tph-hints record. A
    tph-testdev from before reads were recorded gives no direction: all its
    records are writes."""
    return str(r.get("direction", "write"))


def hints_summary(records: list[dict[str, Any]]) -> str:
    if not records:
        return "nothing"
    return "; ".join(hint_text(*hint_of(r), length=r["length"])
                     + (" read" if record_direction(r) == "read" else "")
                     + (" MALFORMED" if r.get("malformed") else "") for r in records)
