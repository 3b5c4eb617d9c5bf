"""The kernel selftests' scenarios: KTAP read into rows, the verdict their own
results give, the device's count of refused DMAs, and the rows in the reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from rig.cli.run import deselect, select
from rig.errors import RigError
from rig.guest.devices import Bench
from rig.results import report
from rig.results.run import Outcome, Run, Status
from rig.scenarios import iommu, kselftest, matrix, selftests
from rig.scenarios.findings import Kind, kind_of
from rig.scenarios.kit import Seen

DRIVER_OK = """TAP version 13
1..3
# Starting 3 tests from 2 test cases.
#  RUN           vfio_pci_driver_test.vfio_type1_iommu.memcpy_from_unmapped_iova ...
tph-testdev: DMA failed: DMA_STATUS 0x26, DMA_ERROR 5
#            OK  vfio_pci_driver_test.vfio_type1_iommu.memcpy_from_unmapped_iova
ok 1 vfio_pci_driver_test.vfio_type1_iommu.memcpy_from_unmapped_iova
#  RUN           vfio_pci_driver_test.iommufd.memcpy_from_unmapped_iova ...
#            OK  vfio_pci_driver_test.iommufd.memcpy_from_unmapped_iova
ok 2 vfio_pci_driver_test.iommufd.memcpy_from_unmapped_iova
#  RUN           vfio_pci_driver_test.iommufd.memcpy_to_unmapped_iova ...
#      SKIP      no reason
ok 3 vfio_pci_driver_test.iommufd.memcpy_to_unmapped_iova # SKIP mode not offered
# PASSED: 3 / 3 tests passed.
# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:1 error:0
tphlab-selftest-exit: 0
"""

ONE_FAILS = """TAP version 13
1..2
#  RUN           vfio_pci_device_test.iommufd.config_space_read_write ...
# vfio_pci_device_test.c:70:config_space_read_write:Expected 0x1b36 (6966) == vendor (0)
# config_space_read_write: Test terminated by assertion
#          FAIL  vfio_pci_device_test.iommufd.config_space_read_write
not ok 1 vfio_pci_device_test.iommufd.config_space_read_write
ok 2 vfio_pci_irq_test.msi.enable_trigger_disable # SKIP MSI: not supported
# FAILED: 1 / 2 tests passed.
tphlab-selftest-exit: 1
"""


def _case(name: str) -> selftests.KernelSelftest:
    return next(c for c in selftests.cases(iommu.ROOTPORTS) if c.name == name)


def _seen(output: str, errors: dict[str, int] | None = None) -> Seen:
    return Seen([], [], 0, output, errors if errors is not None else {})


def test_ktap_rows_name_the_case_its_iommu_mode_and_why() -> None:
    out = kselftest.parse(ONE_FAILS)
    assert out.planned == 2 and out.exit_status == 1 and not out.missing
    assert out.preamble == []          # TAP's version line is not the program's
    failed, skipped = out.cases
    assert failed.status is kselftest.CaseStatus.FAIL and failed.mode == "iommufd"
    assert failed.reason.startswith("vfio_pci_device_test.c:70:config_space_read_write:Expected")
    assert skipped.status is kselftest.CaseStatus.SKIP
    assert skipped.reason == "MSI: not supported" and skipped.mode == ""


@pytest.mark.parametrize("variant, mode", [
    ("iommufd_compat_type1v2", "iommufd_compat_type1v2"),
    ("iommufd_compat_type1", "iommufd_compat_type1"),
    ("vfio_type1v2_iommu_anonymous_hugetlb_2mb", "vfio_type1v2_iommu"),
    ("vfio_type1_iommu_anonymous", "vfio_type1_iommu"),
    ("iommufd", "iommufd"),
    ("msix", ""),
])
def test_mode_of_a_variant(variant: str, mode: str) -> None:
    assert kselftest.Case(f"f.{variant}.t", kselftest.CaseStatus.PASS).mode == mode


def test_a_failed_case_fails_the_scenario_naming_test_mode_and_assertion() -> None:
    case = _case("selftest-vfio_pci_device_test")
    found = case.check(_seen(ONE_FAILS))
    assert len(found) == 1
    assert found[0].startswith("vfio_pci_device_test.iommufd.config_space_read_write "
                               "[iommufd]: vfio_pci_device_test.c:70:")
    assert kind_of(found[0]) is Kind.SELFTEST
    rows = case.rows(_seen(ONE_FAILS))
    assert [r["status"] for r in rows] == ["fail", "skip"]
    assert rows[1]["reason"] == "MSI: not supported"


def test_skips_pass_and_say_why() -> None:
    case = _case("selftest-vfio_pci_driver_test-unmapped")
    seen = _seen(DRIVER_OK, {"iommu": 2, "arg": 0, "st": 0, "bus-master": 0,
                             "unassigned": 0, "target": 0})
    assert case.check(seen) == []
    assert case.received(seen) == "3 cases: 2 pass, 1 skip (mode not offered)"


@pytest.mark.parametrize("errors, wanted", [
    ({"iommu": 1}, "counted 1 DMA(s) refused by the IOMMU, expected 2"),
    ({"iommu": 3}, "counted 3 DMA(s) refused by the IOMMU, expected 2"),
    ({"iommu": 2, "unassigned": 1}, "another reason than the IOMMU: {'unassigned': 1}"),
    ({}, "no dma-errors counters"),
])
def test_the_device_must_have_refused_each_unmapped_dma(errors: dict[str, int],
                                                        wanted: str) -> None:
    found = _case("selftest-vfio_pci_driver_test-unmapped").check(_seen(DRIVER_OK, errors))
    assert any(wanted in f for f in found), found
    assert all(kind_of(f) is Kind.SELFTEST for f in found)


def test_the_counter_is_read_only_for_the_unmapped_cases() -> None:
    assert _case("selftest-vfio_pci_driver_test").check(_seen(DRIVER_OK, {"iommu": 0})) == []


@pytest.mark.parametrize("output, wanted", [
    (DRIVER_OK.replace("tphlab-selftest-exit: 0\n", ""), "did not finish"),
    (DRIVER_OK.replace("ok 3 vfio_pci_driver_test.iommufd.memcpy_to_unmapped_iova # SKIP "
                       "mode not offered\n", ""), "1 of 3 case(s) never reported"),
    (DRIVER_OK.replace("exit: 0", "exit: 139"), "exited 139 with no failed case"),
    ("No driver found for device 0000:01:00.0\ntphlab-selftest-exit: 4\n",
     "ran no case (exit 4): No driver found"),
])
def test_a_program_that_ends_badly_fails(output: str, wanted: str) -> None:
    found = _case("selftest-vfio_pci_driver_test").check(_seen(output, {"iommu": 0}))
    assert any(wanted in f for f in found), found


def test_a_whole_program_skip_passes_where_it_may() -> None:
    out = "Unable to determine the device\ntphlab-selftest-exit: 4\n"
    case = _case("selftest-vfio_iommufd_setup_test")
    assert case.check(_seen(out)) == []
    assert case.rows(_seen(out)) == [{"name": "vfio_iommufd_setup_test", "status": "skip",
                                      "reason": "Unable to determine the device"}]


def test_a_tree_without_the_uapi_selftest_differs_in_contract() -> None:
    found = _case("selftest-vfio_pci_dmabuf_tph_test").check(_seen("tphlab-selftest-missing\n"))
    assert len(found) == 1 and kind_of(found[0]) is Kind.CONTRACT
    other = _case("selftest-vfio_pci_device_test").check(_seen("tphlab-selftest-missing\n"))
    assert kind_of(other[0]) is Kind.SELFTEST


def test_commands_run_the_program_on_its_device_with_its_filters() -> None:
    bench = Bench("0000:01:00.0", "0000:02:00.0", "0000:03:00.0")
    cmd = _case("selftest-vfio_pci_driver_test").command(bench)
    assert ("/usr/lib/tphlab/selftests/vfio/vfio_pci_driver_test -T memcpy_from_unmapped_iova "
            "-T memcpy_to_unmapped_iova 0000:01:00.0 2>&1") in cmd
    assert "tphlab-selftest-exit: $?" in cmd
    assert _case("selftest-vfio_pci_dmabuf_tph_test-tph-completer").command(bench).count(
        "0000:03:00.0") == 1


def test_the_matrix_runs_each_once_on_the_topology_with_memory_and_a_tph_spare() -> None:
    names = [c.name for c in matrix.full() if isinstance(c, selftests.KernelSelftest)]
    assert len(names) == len(set(names)) == 8
    topo = iommu.ROOTPORTS
    assert topo.memory_mb >= 2048 and topo.spare_props == {"tph-completer": "tph"}
    assert {c.topo.name for c in matrix.full() if isinstance(c, selftests.KernelSelftest)} == \
        {topo.name}
    order = [c.name for c in matrix.full() if c.topo == topo]
    assert order[-1] == "rootports-no-taint"


def _run() -> Run:
    case = _case("selftest-vfio_pci_device_test")
    o = Outcome(name=case.name, topology="iommu-rootports", status=Status.FAIL,
                failures=case.check(_seen(ONE_FAILS)), kinds=["selftest"],
                cases=case.rows(_seen(ONE_FAILS)), received=case.received(_seen(ONE_FAILS)))
    return Run("tcg", [o])


def test_reports_show_the_rows() -> None:
    run = _run()
    text = report.table(run, width=240)
    assert "fail vfio_pci_device_test.iommufd.config_space_read_write: " in text
    assert "skip vfio_pci_irq_test.msi.enable_trigger_disable: MSI: not supported" in text
    ktap = report.to_ktap(run)
    assert "    1..2" in ktap
    assert "    not ok 1 vfio_pci_device_test.iommufd.config_space_read_write" in ktap
    assert "    ok 2 vfio_pci_irq_test.msi.enable_trigger_disable # SKIP MSI: not supported" \
        in ktap
    suites = ET.fromstring(report.to_junit(run))
    cases = suites.find("testsuite[@name='tphlab.selftests']")
    assert cases is not None and cases.get("failures") == "1" and cases.get("skipped") == "1"
    again = Run.from_json(run.to_json())
    assert again.outcomes[0].cases == run.outcomes[0].cases


def test_minus_K_leaves_the_selftests_out_by_the_rules_of_minus_k() -> None:
    every = matrix.full()
    left = deselect(every, [matrix.SELFTESTS])
    assert [c.name for c in left] == [c.name for c in matrix.without_selftests()]
    assert len(every) - len(left) == 8
    only = deselect(select(every, ["selftest-"]), ["selftest-vfio_pci_driver_test"])
    assert "selftest-vfio_pci_driver_test-unmapped" in [c.name for c in only]
    assert "selftest-vfio_pci_driver_test" not in [c.name for c in only]
    with pytest.raises(RigError, match="leaves no scenario"):
        deselect(select(every, ["selftest-"]), ["selftest-*"])
