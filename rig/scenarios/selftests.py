"""The kernel's own VFIO selftests, run in the guest on tph-testdev.

The programs of the tree under test's tools/testing/selftests/vfio, built
static with the tph-testdev driver of libvfio (selftest-driver/) by
rig.builder.selftest_build, are in the guest image under SELFTEST_DIR. Each
scenario runs one program on one device, bound to vfio-pci, through every
IOMMU mode the library offers (its fixtures' variants), and each test case
of its KTAP output becomes a row of the run. Their own results decide: a
failed case fails the scenario with its assertion; a skipped one passes
and says why in its row.

For the driver test's cases that DMA from and to an IOVA nothing is mapped
at, whose return value the test ignores, the device's side decides: the
exporter counts each DMA the IOMMU refused (x-query-tph-hints' dma-errors),
and every passing case must have had its one DMA refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rig.builder import selftest_build
from rig.guest.devices import Bench
from rig.guest.topology import Topology
from rig.scenarios import kselftest
from rig.scenarios.findings import Finding, Kind, contract
from rig.scenarios.kit import Seen
from rig.scenarios.kselftest import EXIT_MARK, MISSING_MARK, Case, CaseStatus

SELFTEST_DIR = selftest_build.GUEST_DIR
# The series' own selftest of its uAPI (kernel-patches/, the last patch)
UAPI_TEST = "vfio_pci_dmabuf_tph_test"
KSFT_SKIP = 4
# The driver test's cases that DMA at an unmapped IOVA, each once
UNMAPPED_CASES = ("memcpy_from_unmapped_iova", "memcpy_to_unmapped_iova")
# The dma-errors counters of a failed DMA that is not the IOMMU's refusal
OTHER_DMA_ERRORS = ("arg", "st", "bus-master", "unassigned", "target")


def selftest(text: str) -> Finding:
    """A failed case of a kernel selftest, or a program that did not finish."""
    return Finding(text, Kind.SELFTEST)


@dataclass(frozen=True)
class KernelSelftest:
    """One selftest program on one of the topology's vfio-pci devices."""

    name: str
    program: str
    summary: str
    topo: Topology
    role: str = "exporter"                  # exporter or spare: a vfio-pci device
    options: tuple[str, ...] = ()           # kselftest_harness options (-t, -T)
    must_run: bool = False                  # a skip of the whole program is a failure
    refused: bool = False                   # each passing case had one DMA refused
    # Seconds the guest command may take (at least the run's case timeout):
    # each case maps its buffers in every IOMMU mode; the driver test's 1 GiB
    # takes 70 s in all under TCG on a fast day (300 s in 4 KiB pages)
    guest_timeout: float = 900.0
    busy_vcpus: int = 1

    def bdf(self, bench: Bench) -> str:
        return bench.exporter if self.role == "exporter" else bench.spare_for(self.name,
                                                                              self.topo)

    def command(self, bench: Bench) -> str:
        opts = "".join(f" {o}" for o in self.options)
        prog = f"{SELFTEST_DIR}/{self.program}"
        return (f"if [ -x {prog} ]; then {prog}{opts} {self.bdf(bench)} 2>&1; "
                f"echo \"{EXIT_MARK} $?\"; else echo {MISSING_MARK}; fi")

    def check(self, seen: Seen) -> list[str]:
        out = kselftest.parse(seen.output)
        if out.missing:
            return [self._missing()]
        failures: list[str] = [selftest(f"{c.name}{_mode(c)}: {c.reason}")
                               for c in out.cases if c.status is CaseStatus.FAIL]
        failures += self._ending(out)
        if self.refused:
            failures += refused_dmas(out.cases, seen.dma_errors)
        return failures

    def _missing(self) -> Finding:
        if self.program == UAPI_TEST:
            return contract(f"{self.program} is not in the tree under test: the reference "
                            "series adds it with the uAPI", "present", "absent")
        return selftest(f"{self.program} is not in the tree under test's "
                        "tools/testing/selftests/vfio")

    def _ending(self, out: kselftest.Output) -> list[str]:
        """How the program ended, where that is a failure its cases do not show."""
        head = "; ".join(out.preamble[-2:])
        if out.exit_status is None:
            return [selftest(f"{self.program} did not finish (no exit status; "
                             f"{len(out.cases)} case(s) reported)")]
        if not out.cases:
            if out.exit_status == KSFT_SKIP and not self.must_run:
                return []
            return [selftest(f"{self.program} ran no case (exit {out.exit_status})"
                             + (f": {head}" if head else ""))]
        if out.planned is not None and len(out.cases) < out.planned:
            return [selftest(f"{self.program}: {out.planned - len(out.cases)} of "
                             f"{out.planned} case(s) never reported (exit {out.exit_status})")]
        failed = any(c.status is CaseStatus.FAIL for c in out.cases)
        if out.exit_status not in (0, KSFT_SKIP) and not failed:
            return [selftest(f"{self.program} exited {out.exit_status} with no failed case")]
        return []

    def describe_set(self) -> str:
        return f"{self.program}{''.join(' ' + o for o in self.options)} on the {self.role}"

    def received(self, seen: Seen) -> str:
        return rows_summary(kselftest.parse(seen.output))

    def rows(self, seen: Seen) -> list[dict[str, str]]:
        """One row per test case, for the reports (and the program's own skip)."""
        out = kselftest.parse(seen.output)
        if out.missing:
            return [{"name": self.program, "status": CaseStatus.SKIP.value,
                     "reason": "not in the tree under test"}]
        if not out.cases and out.exit_status == KSFT_SKIP:
            why = out.preamble[-1] if out.preamble else "the program skipped"
            return [{"name": self.program, "status": CaseStatus.SKIP.value, "reason": why}]
        return [c.to_dict() for c in out.cases]


def _mode(case: Case) -> str:
    return f" [{case.mode}]" if case.mode else ""


def refused_dmas(cases: list[Case], errors: Mapping[str, Any]) -> list[str]:
    """The exporter's count of DMAs the IOMMU refused against the cases that
    passed: each DMAs once at an unmapped IOVA."""
    passed = [c for c in cases if c.status is CaseStatus.PASS
              and c.name.rsplit(".", 1)[-1] in UNMAPPED_CASES]
    if not errors:
        return [selftest("the exporter reported no dma-errors counters (x-query-tph-hints)")]
    found: list[str] = []
    refused = int(errors.get("iommu", 0))
    if refused != len(passed):
        found.append(selftest(f"the device counted {refused} DMA(s) refused by the IOMMU, "
                              f"expected {len(passed)}: one per passing unmapped-IOVA case"))
    other = {k: int(errors.get(k, 0)) for k in OTHER_DMA_ERRORS if errors.get(k)}
    if other:
        found.append(selftest(f"DMAs failed for another reason than the IOMMU: {other}"))
    return found


def rows_summary(out: kselftest.Output) -> str:
    """"35 cases: 30 pass, 5 skip (No MSI support)" for the report's line."""
    if out.missing:
        return "not in the tree under test"
    if not out.cases:
        return (f"no case ran (exit {out.exit_status})"
                + (f": {out.preamble[-1]}" if out.preamble else ""))
    counts = {s: sum(c.status is s for c in out.cases) for s in CaseStatus}
    text = f"{len(out.cases)} cases: " + ", ".join(f"{n} {s.value}" for s, n in counts.items()
                                                    if n)
    reasons = sorted({c.reason for c in out.cases if c.status is CaseStatus.SKIP})
    if reasons:
        text += f" ({'; '.join(reasons)})"
    return text


# The kernel's VFIO selftests the bench runs, with what each checks
PROGRAMS = (
    ("vfio_pci_device_test", "config space, BARs, MSI-X and reset through VFIO"),
    ("vfio_dma_mapping_test", "DMA map and unmap of anonymous and hugetlb memory"),
    ("vfio_dma_mapping_mmio_test", "DMA map of a device BAR (peer-to-peer MMIO)"),
    ("vfio_iommufd_setup_test", "binding the device's cdev to iommufd"),
)


def cases(topo: Topology) -> list[KernelSelftest]:
    """The selftest scenarios of an IOMMU topology with a spare TPH completer:
    the kernel's VFIO selftests on the exporter, the driver test split so the
    unmapped-IOVA cases run alone (the device's count of refused DMAs is
    theirs), and the series' uAPI selftest on the exporter (an Extended TPH
    completer) and on the spare (a TPH completer)."""
    out = [KernelSelftest(f"selftest-{prog}", prog, what, topo) for prog, what in PROGRAMS]
    unmapped = [a for c in UNMAPPED_CASES for a in ("-t", c)]
    out += [
        KernelSelftest("selftest-vfio_pci_driver_test", "vfio_pci_driver_test",
                       "memcpy and MSI through libvfio's tph_testdev driver", topo,
                       options=tuple(a.upper() if a == "-t" else a for a in unmapped),
                       must_run=True),
        KernelSelftest("selftest-vfio_pci_driver_test-unmapped", "vfio_pci_driver_test",
                       "memcpy from and to an unmapped IOVA: the IOMMU refuses the DMA",
                       topo, options=tuple(unmapped), must_run=True, refused=True),
        KernelSelftest(f"selftest-{UAPI_TEST}", UAPI_TEST,
                       "the series' uAPI on an Extended TPH completer", topo),
        KernelSelftest(f"selftest-{UAPI_TEST}-tph-completer", UAPI_TEST,
                       "the series' uAPI on a TPH completer (ST_EXT refused)", topo,
                       role="spare"),
    ]
    return out
