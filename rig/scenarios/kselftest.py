"""What a kselftest_harness program printed, as one row per test case.

A program of tools/testing/selftests prints KTAP (TAP version 13): a plan,
one `ok N NAME` / `not ok N NAME` line per case, `# SKIP reason` on a
skipped one, and `#` diagnostic lines, among them the assertion that ended
a failed case ("# vfio_pci_driver_test.c:123:memcpy_success:Expected ...").
The lines are read with tap.py's line parser (the TAP grammar is its job);
this module only ties each diagnostic to its case and names the IOMMU mode
of a VFIO fixture's variant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from tap.line import Diagnostic, Plan, Result, Version
from tap.parser import Parser

# The modes of FIXTURE_VARIANT_ADD_ALL_IOMMU_MODES (libvfio/iommu.h),
# longest first: a variant name starts with its mode.
IOMMU_MODES = ("iommufd_compat_type1v2", "iommufd_compat_type1", "vfio_type1v2_iommu",
               "vfio_type1_iommu", "iommufd")
# The harness's own progress lines, which say nothing a row does not
_HARNESS = re.compile(r"^\s*(RUN|OK|FAIL|SKIP|XFAIL|XPASS)\s+\S|^(Starting|PASSED|FAILED|Totals)")
_ASSERTION = re.compile(r"^\S+\.c:\d+:")
# What the rig's command prints after the program: its exit status
EXIT_MARK = "tphlab-selftest-exit:"
MISSING_MARK = "tphlab-selftest-missing"


class CaseStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Case:
    """One test case: fixture.variant.test as the harness names it."""

    name: str
    status: CaseStatus
    reason: str = ""            # a skip's reason, or the assertion that failed
    diagnostics: tuple[str, ...] = ()

    @property
    def mode(self) -> str:
        """The IOMMU mode of its fixture variant, "" if it has none."""
        parts = self.name.split(".")
        variant = parts[1] if len(parts) == 3 else ""
        return next((m for m in IOMMU_MODES if variant.startswith(m)), "")

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "reason": self.reason,
                **({"mode": self.mode} if self.mode else {})}


@dataclass
class Output:
    """A program's run: its cases, the plan, and how it ended."""

    cases: list[Case] = field(default_factory=list)
    planned: int | None = None
    exit_status: int | None = None      # None: the command never said (killed, cut short)
    missing: bool = False               # the program is not in the tree under test
    preamble: list[str] = field(default_factory=list)  # what it printed before any case


def _reason(diagnostics: list[str]) -> str:
    """The assertion of a failed case (its first "file.c:LINE:" line), else the
    last line that is not the harness's own."""
    own = [d for d in diagnostics if not _HARNESS.match(d)]
    asserted = [d for d in own if _ASSERTION.match(d)]
    if asserted:
        return asserted[0]
    return own[-1] if own else ""


def parse(stdout: str) -> Output:
    """The cases of a program's output (stdout and stderr together, in order)."""
    parser = Parser()
    out = Output()
    pending: list[str] = []
    for raw in stdout.splitlines():
        text = raw.rstrip()
        if text.startswith(EXIT_MARK):
            tail = text.removeprefix(EXIT_MARK).strip()
            out.exit_status = int(tail) if tail.isdigit() else None
            continue
        if text == MISSING_MARK:
            out.missing = True
            continue
        line = parser.parse_line(text)
        if isinstance(line, Version):
            continue
        if isinstance(line, Plan):
            out.planned = line.expected_tests
        elif isinstance(line, Diagnostic):
            pending.append(line.text.removeprefix("#").strip())
        elif isinstance(line, Result):
            out.cases.append(_case(line, pending))
            pending = []
        elif text.strip() and not out.cases:
            out.preamble.append(text.strip())
        elif text.strip():
            pending.append(text.strip())
    if not out.cases:
        out.preamble += pending
    return out


def _case(line: Result, diagnostics: list[str]) -> Case:
    name = line.description.strip()
    if line.skip:
        return Case(name, CaseStatus.SKIP, line.directive.reason.strip(), tuple(diagnostics))
    if line.ok:
        return Case(name, CaseStatus.PASS, "", tuple(diagnostics))
    return Case(name, CaseStatus.FAIL, _reason(diagnostics) or "the case failed",
                tuple(diagnostics))
