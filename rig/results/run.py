"""A run's results as data: each scenario's outcome and the run's, to and from JSON.

Everything a report shows is here, so a saved run (`rig run --json`, or
RUNDIR/run.json) renders again exactly as it did (`rig report`): nothing
needs the scenarios' code or a guest.

Exit codes (`Run.exit_code`; the highest that applies wins): 0 every scenario
passed, 1 a scenario failed, 2 a set-up error, 3 a guest died or hung, 4 an
internal error of the rig (a check or the runner raised), 128 + the signal's
number when a signal stopped it (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP); and 5
when nothing but DIFFERS kept it from passing: every scenario passed or
differs from the reference series in its uAPI contract only, with no fault on
the wire, in a DMA or in the kernel's health (a CI that gates on faults only
accepts 0 and 5).
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from rig import errors, stopsignals

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_SETUP = 2
EXIT_GUEST = 3
EXIT_INTERNAL = 4
EXIT_DIFFERS = 5
EXIT_INTERRUPTED = 130


class Status(StrEnum):
    PASS = "PASS"          # ran, and what was received is what was set
    FAIL = "FAIL"          # ran, and a check found a fault (or any difference, on our series)
    DIFFERS = "DIFFERS"    # ran on another series: differs from ours in the uAPI contract only
    ERROR = "ERROR"        # the rig or the check broke: no verdict
    CRASHED = "CRASHED"    # its guest died or hung while it ran
    NOT_RUN = "NOT_RUN"    # never ran: its guest did not boot or died before it, or Ctrl-C


class FormatError(ValueError):
    """A document that is not a saved run."""


@dataclass
class Outcome:
    """One scenario's result, as reports show it."""

    name: str
    topology: str
    status: Status
    seconds: float = 0.0
    summary: str = ""
    set_text: str = ""              # what userspace set (the "set" column)
    received: str = ""              # what came back (the "received" column)
    failures: list[str] = field(default_factory=list)
    # Each failure's kind (rig.scenarios.findings.Kind: wire, dma, health,
    # contract), and each contract difference with the reference's value and
    # the one seen; a report from before kinds has none
    kinds: list[str] = field(default_factory=list)
    contract: list[dict[str, str]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)              # tphctl's JSON lines
    records: list[dict[str, Any]] = field(default_factory=list)  # exporter's log after
    dmesg: list[str] = field(default_factory=list)                         # kernel reports
    output: str | None = None       # the directory with its raw output
    warnings: list[str] = field(default_factory=list)     # stall reports: not a verdict
    # The VFIO path and P2P mapping its guest used, as read there (IOMMU
    # topologies' p2p-path scenarios); "" for the others
    path: str = ""
    # A kernel selftest's test cases, one row each: name, status (pass,
    # fail, skip), reason, IOMMU mode; [] for the other scenarios
    cases: list[dict[str, str]] = field(default_factory=list)
    # A kernel selftest's own output (its KTAP) and the exporter's count of
    # failed DMAs by reason, as read: a saved run re-parses its rows from them
    ktap: str = ""
    dma_errors: dict[str, int] = field(default_factory=dict)
    # Its placement's devices by role (exporter, importer, spare) at their guest
    # addresses: whose requester ID a record carries; {} when it did not run
    devices: dict[str, str] = field(default_factory=dict)
    # The guest (machine) that held it: a topology's name, or "first+N" for
    # a packed one (rig.guest.packing); "" when no guest took it
    guest: str = ""

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "topology": self.topology,
                "set": self.set_text, "received": self.received, "status": self.status.value,
                "passed": self.passed, "seconds": self.seconds, "failures": self.failures,
                "kinds": self.kinds, "contract": self.contract,
                "steps": self.steps, "records": self.records,
                "dmesg": self.dmesg, "output": self.output, "warnings": self.warnings,
                **({"path": self.path} if self.path else {}),
                **({"cases": self.cases, "ktap": self.ktap, "dma_errors": self.dma_errors}
                   if self.cases else {}),
                **({"devices": self.devices} if self.devices else {}),
                **({"guest": self.guest} if self.guest else {})}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Outcome:
        """An outcome of to_dict; a report from before "status" reads as PASS or FAIL."""
        status = doc.get("status")
        if status is None:
            status = Status.PASS if doc.get("passed") else Status.FAIL
        records = doc.get("records")
        if records is None:            # a report from when the log was read per pause
            records = (doc.get("snapshots") or [[]])[-1]
        return cls(name=str(doc["name"]), topology=str(doc.get("topology", "")),
                   status=Status(status), seconds=float(doc.get("seconds", 0.0)),
                   summary=str(doc.get("summary", "")), set_text=str(doc.get("set", "")),
                   received=str(doc.get("received", "")),
                   failures=[str(f) for f in doc.get("failures", [])],
                   kinds=[str(k) for k in doc.get("kinds", [])],
                   contract=[{str(k): str(v) for k, v in c.items()}
                             for c in doc.get("contract", [])],
                   steps=list(doc.get("steps", [])), records=list(records),
                   dmesg=[str(d) for d in doc.get("dmesg", [])], output=doc.get("output"),
                   warnings=[str(w) for w in doc.get("warnings", [])],
                   path=str(doc.get("path", "")),
                   cases=[{str(k): str(v) for k, v in c.items()} for c in doc.get("cases", [])],
                   ktap=str(doc.get("ktap", "")),
                   dma_errors={str(k): int(v) for k, v in (doc.get("dma_errors") or {}).items()},
                   devices={str(k): str(v) for k, v in (doc.get("devices") or {}).items()},
                   guest=str(doc.get("guest", "")))


BUG_FIX = "this is a bug of the rig: report it with the log"


def own_message(exc: BaseException) -> str:
    """An error's own message: a RigError's, else its type and text (a bug of the rig)."""
    if isinstance(exc, errors.RigError):
        return exc.message
    return f"internal error: {type(exc).__name__}: {exc}"


@dataclass
class Problem:
    """What ended a scenario or a guest early, and the exit code it makes."""

    code: int                       # EXIT_SETUP, EXIT_GUEST or EXIT_INTERNAL
    message: str
    log: str | None = None
    fix: str | None = None
    topology: str | None = None     # the guest it happened in, if one

    @classmethod
    def of(cls, exc: BaseException, where: str | None = None, log: str | None = None,
           topology: str | None = None) -> Problem:
        """The rig's one policy for an exception: a RigError is what it says (its
        exit code, message, log and fix); anything else is a bug of the rig
        (EXIT_INTERNAL), whose traceback is in `log` when there is one.
        `where` prefixes the message."""
        prefix = f"{where}: " if where else ""
        if isinstance(exc, errors.RigError):
            return cls(exc.exit_code, prefix + exc.message, exc.log, exc.fix, topology)
        return cls(EXIT_INTERNAL, prefix + own_message(exc), log,
                   BUG_FIX if log is not None else None, topology)

    def render(self) -> str:
        """As the CLI prints an error."""
        return errors.render(self.message, self.log, self.fix)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "log": self.log, "fix": self.fix,
                "topology": self.topology}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Problem:
        return cls(int(doc["code"]), str(doc["message"]), doc.get("log"), doc.get("fix"),
                   doc.get("topology"))


@dataclass
class Run:
    accel: str
    outcomes: list[Outcome] = field(default_factory=list)
    boots: dict[str, float] = field(default_factory=dict)
    logs: Path | None = None
    accel_reason: str = ""       # why this accelerator: "auto: <finding>", "asked for ..."
    # What was tested, per component (qemu, kernel): the Source.detail() of its build
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    interrupted: bool = False    # Ctrl-C, SIGTERM, SIGHUP: what had not finished is NOT_RUN
    signum: int = 2              # the signal that interrupted it (SIGINT for Ctrl-C)
    # How each guest came up: "boot", or "snapshot" (restored from one)
    started: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes) \
            and not self.problems and not self.interrupted

    def count(self, status: Status) -> int:
        return sum(o.status is status for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return stopsignals.exit_code(self.signum)
        codes = [p.code for p in self.problems]
        if any(o.status is Status.ERROR for o in self.outcomes):
            codes.append(EXIT_INTERNAL)     # an ERROR always comes with its Problem; to be sure
        if any(o.status is Status.CRASHED for o in self.outcomes):
            codes.append(EXIT_GUEST)
        if not self.passed:
            differs_only = (not codes and self.count(Status.DIFFERS) > 0 and all(
                o.status in (Status.PASS, Status.DIFFERS) for o in self.outcomes))
            codes.append(EXIT_DIFFERS if differs_only else EXIT_FAIL)
        return max(codes, default=EXIT_PASS)

    def to_dict(self) -> dict[str, Any]:
        return {"accel": self.accel, "accel_reason": self.accel_reason, "passed": self.passed,
                "exit_code": self.exit_code, "interrupted": self.interrupted,
                "boots": self.boots, "started": self.started,
                "logs": str(self.logs) if self.logs else None,
                "sources": self.sources,
                "errors": [p.to_dict() for p in self.problems],
                "scenarios": [o.to_dict() for o in self.outcomes],
                **({"signal": stopsignals.name_of(self.signum)} if self.interrupted else {})}

    def interrupt(self, exc: BaseException) -> None:
        """Mark the run interrupted by the signal behind `exc` (a KeyboardInterrupt)."""
        self.interrupted, self.signum = True, stopsignals.signum_of(exc)

    @property
    def interruption(self) -> str:
        """How a report says it was interrupted: "interrupted", or with the signal
        when it was not Ctrl-C."""
        return stopsignals.describe(self.signum)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Run:
        try:
            return cls(accel=str(doc["accel"]),
                       outcomes=[Outcome.from_dict(o) for o in doc["scenarios"]],
                       boots={str(k): float(v) for k, v in doc.get("boots", {}).items()},
                       logs=Path(doc["logs"]) if doc.get("logs") else None,
                       accel_reason=str(doc.get("accel_reason", "")),
                       sources=dict(doc.get("sources") or {}),
                       problems=[Problem.from_dict(p) for p in doc.get("errors", [])],
                       interrupted=bool(doc.get("interrupted", False)),
                       signum=_signum(doc.get("signal")),
                       started={str(k): str(v) for k, v in doc.get("started", {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FormatError(f"not a tphlab run report ({type(exc).__name__}: {exc})") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Run:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FormatError(f"not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise FormatError("not a tphlab run report (not a JSON object)")
        return cls.from_dict(doc)


def load(path: Path) -> Run:
    """A saved run; OSError if unreadable, FormatError if not a run report."""
    return Run.from_json(path.read_text())


def _signum(name: object) -> int:
    """A saved run's "signal" (absent in runs saved before it was recorded: Ctrl-C)."""
    if name is None:
        return EXIT_INTERRUPTED - 128
    return int(signal.Signals[str(name)])
