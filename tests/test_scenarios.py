from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import xmlschema

from rig.execution import runner, scenario_run
from rig.guest import devices, kernel_log, pci_address
from rig.guest.devices import Bench
from rig.guest.dma_status import ST_DONE, ST_ERR_DMA, ST_ERROR
from rig.results import report
from rig.results.run import Run, Status
from rig.scenarios import hint_cases, protocol
from rig.scenarios.hint_cases import ST, ST_EXT, Case, Hint, TphSet
from rig.scenarios.kit import Seen

RID = 0x0400
BENCH = Bench("0000:04:00.0", "0000:05:00.0", "0000:06:00.0")
CASE = Case("st8", "8-bit", topo=hint_cases.IMPORTER_8BIT, sets=(TphSet(ST, st=0x42, ph=2),),
            wire=Hint(0x42, 2, False))


def good_steps(case: Case) -> list[dict[str, Any]]:
    """What tphctl prints when the kernel and the devices do what the case expects."""
    w = case.wire
    st, ph, ext = (w.st, w.ph, int(w.ext)) if w else (0, 0, 0)
    lines: list[protocol.Line] = [protocol.Open(bdf=BENCH.exporter, device_fd=5),
                                  protocol.Get(fd=6, size=1 << 20)]
    if case.probe_errno is not None:
        lines.append(protocol.Probe(ret=-case.probe_errno, errno=case.probe_errno))
    lines += [protocol.Set(ret=-s.errno, errno=s.errno, flags=s.flags, st=s.st, st_ext=s.st_ext,
                           ph=s.ph) for s in case.sets]
    lines += [protocol.TphGet(ret=-b.errno, errno=b.errno) if b.fd == "get" else
              protocol.SetRaw(ret=-b.errno, errno=b.errno, fd=b.fd) for b in case.bad_sets]
    lines += [protocol.Attach(tph_ret=case.attach_ret, st=st, ph=ph, ext=ext, req_type=3,
                              size=1 << 20),
              (protocol.Read if case.read else protocol.Dma)(
                  len=protocol.DMA_LEN, status=ST_DONE, tph_ret=case.attach_ret,
                  th=int(w is not None), st=st, ph=ph, ext=ext)]
    return [ln.line() for ln in lines]


def good_records(case: Case) -> list[dict[str, Any]]:
    return [dict(r, seq=1) for r in hint_cases.expected_records(case, RID)]


def test_requester_id_from_bdf() -> None:
    assert pci_address.requester_id("0000:04:00.0") == 0x0400
    assert pci_address.requester_id("03:01.2") == 0x030A
    assert pci_address.bdf_of(0x030A) == "03:01.2"
    with pytest.raises(ValueError):
        pci_address.requester_id("nope")


def test_matching_run_passes_for_every_case() -> None:
    for case in [*hint_cases.matrix(), hint_cases.custom(0x1234, 3)]:
        assert hint_cases.check(case, good_steps(case), good_records(case), RID) == [], case.name


@pytest.mark.parametrize("field,value", [("st", 0x43), ("ph", 1), ("ext", True), ("th", False),
                                         ("requester-id", 0x0300), ("length", 32),
                                         ("malformed", True), ("direction", "read")])
def test_any_wrong_field_on_the_wire_fails(field: str, value: object) -> None:
    recs = good_records(CASE)
    recs[0][field] = value
    bad = hint_cases.check(CASE, good_steps(CASE), recs, RID)
    assert bad and "exporter received" in bad[0]


def test_a_record_without_direction_is_a_write() -> None:
    """A QEMU from before tph-testdev recorded reads gives no "direction"."""
    recs = good_records(CASE)
    del recs[0]["direction"]
    assert hint_cases.check(CASE, good_steps(CASE), recs, RID) == []
    recs[0]["direction"] = "read"
    bad = hint_cases.check(CASE, good_steps(CASE), recs, RID)
    assert bad and "read" in bad[0]


def test_a_read_case_wants_a_read_step_and_a_read_record() -> None:
    case = next(c for c in hint_cases.matrix() if c.name == "read-st8-ph2")
    assert case.read and case.tphctl_steps(BENCH)[-6:] == ["attach", "read", "0", "64",
                                                          "status", "detach"]
    steps, recs = good_steps(case), good_records(case)
    assert recs[0]["direction"] == "read"
    assert hint_cases.check(case, steps, recs, RID) == []
    # The write's records, or its step, do not pass for a read
    writes = [dict(r, direction="write") for r in recs]
    assert hint_cases.check(case, steps, writes, RID)
    assert hint_cases.check(case, good_steps(CASE), recs, RID)


def test_a_dma_the_device_failed_fails_the_case() -> None:
    steps = good_steps(CASE)
    next(s for s in steps if s["step"] == "dma")["status"] = ST_DONE | ST_ERROR | ST_ERR_DMA
    bad = hint_cases.check(CASE, steps, good_records(CASE), RID)
    assert bad == ["the importer's DMA ended with status DONE|ERROR|ERR_DMA, expected DONE"]


def test_missing_or_extra_records_fail() -> None:
    assert hint_cases.check(CASE, good_steps(CASE), [], RID)
    assert hint_cases.check(CASE, good_steps(CASE), good_records(CASE) * 2, RID)


def test_wrong_importer_query_and_set_errno_fail() -> None:
    steps = good_steps(CASE)
    next(s for s in steps if s["step"] == "attach")["ph"] = 3
    assert any("importer got" in b for b in hint_cases.check(CASE, steps, good_records(CASE),
                                                              RID))
    steps = good_steps(CASE)
    steps[2]["errno"] = 95
    assert any("SET #1" in b for b in hint_cases.check(CASE, steps, good_records(CASE), RID))


def test_no_hint_case_rejects_a_hint() -> None:
    case = next(c for c in hint_cases.matrix() if c.name == "flags-0-clears")
    recs = good_records(case)
    hinted = copy.deepcopy(recs)
    hinted[0].update(th=True, st=5, ph=1)
    assert hint_cases.check(case, good_steps(case), recs, RID) == []
    assert hint_cases.check(case, good_steps(case), hinted, RID)


def test_each_bad_set_must_fail_with_its_errno() -> None:
    case = next(c for c in hint_cases.matrix() if c.name == "bad-input-keeps-state")
    assert len(case.bad_sets) >= 8
    steps = good_steps(case)
    raw = [s for s in steps if s["step"] == "set-raw"]
    raw[1].update(ret=0, errno=0)           # the kernel accepted ph 4
    bad = hint_cases.check(case, steps, good_records(case), RID)
    assert bad == ["SET PH 4: errno 0, expected 22"]
    cmd = case.tphctl_steps(BENCH)
    assert cmd.count("set-raw") == len(case.bad_sets) - 1 and "tph-get" in cmd
    assert cmd.index("set") < cmd.index("set-raw") < cmd.index("attach")
    assert cmd[cmd.index("other") + 1] == BENCH.spare
    with pytest.raises(ValueError, match="no spare device"):
        case.tphctl_steps(Bench("0000:04:00.0", "0000:05:00.0"))


def test_tphctl_steps_encode_the_sets() -> None:
    case = Case("x", "x", sets=(TphSet(ST | ST_EXT, st=0x12, st_ext=0x3456, ph=2),),
                probe_errno=95)
    steps = case.tphctl_steps(Bench("0000:03:00.0", "0000:04:00.0"))
    assert steps[:4] == ["open", "0000:03:00.0", "probe", "get"]
    assert steps[4:9] == ["set", "3", "0x12", "0x3456", "2"]
    assert "attach" in steps and "dma" in steps


def test_cases_are_grouped_by_topology_in_order() -> None:
    gs = runner.groups(hint_cases.matrix(), pack=False)
    names = [t.name for t, _ in gs]
    assert names == ["default", "importer-8bit", "rp-no-completer", "exporter-no-completer",
                     "pci-notph", "exporter-tph-completer", "importer-iv-msix",
                     "rciep-epyc", "dn0-no-eetlp-prefix", "dn1-no-eetlp-prefix",
                     "switch-no-eetlp-prefix"]
    assert sum(len(m) for _, m in gs) == len(hint_cases.matrix())


def test_packed_machines_keep_each_topologys_cases_in_matrix_order() -> None:
    """Packed: what is machine-wide (pci=notph, the EPYC CPU) keeps a guest of
    its own; the rest share one, their cases in the matrix's order."""
    cases = hint_cases.matrix()
    gs = runner.groups(cases)
    assert [t.name for t, _ in gs] == ["default+8", "pci-notph", "rciep-epyc"]
    machine, members = gs[0]
    assert [p.name for p in machine.pairs()] == [
        "default", "importer-8bit", "rp-no-completer", "exporter-no-completer",
        "exporter-tph-completer", "importer-iv-msix", "dn0-no-eetlp-prefix",
        "dn1-no-eetlp-prefix", "switch-no-eetlp-prefix"]
    assert members == [c for c in cases if c.topo in machine.pairs()]
    assert machine.cpus == 2 and machine.spare is False


def test_dmesg_splats_are_found() -> None:
    text = "ok line\nWARNING: CPU: 0 PID: 1 at drivers/x.c:1\nfine\nBUG: KASAN: use-after-free\n"
    assert len(kernel_log.dmesg_splats(text)) == 2
    assert kernel_log.dmesg_splats("tph_importer: attached\n") == []
    boot = ("rcu: \tRCU lockdep checking is enabled.\nKernelAddressSanitizer initialized "
            "(generic)\nLock dependency validator: Copyright (c) 2006 Red Hat, Inc.\n")
    assert kernel_log.dmesg_splats(boot) == []
    assert len(kernel_log.dmesg_splats("WARNING: possible circular locking dependency "
                                      "detected\n[ INFO: inconsistent lock state ]\n")) == 2


def _run() -> Run:
    seen = Seen([], good_records(CASE), RID)
    ok = scenario_run.outcome_of(CASE, Status.PASS, 0.5, seen=seen, received=CASE.received(seen))
    bad = scenario_run.outcome_of(hint_cases.matrix()[0], Status.FAIL, 0.25,
                               ["exporter received [] ..."])
    return Run("tcg", [ok, bad], {"default": 1.5})


def test_table_has_each_scenario_and_verdict() -> None:
    text = report.table(_run())
    assert "st8" in text and "PASS" in text and "FAIL" in text
    assert "TH=1 PH=2 ST=0x42 8-bit x64B" in text
    assert "1/2 scenarios passed (1 fail)\n  accel tcg\n  boots: 1 guest (0 restored from " \
        "snapshots), 1.5s in all, slowest default 1.5s" in text
    assert "boots: default 1.5s" in report.table(_run(), full=True)


def test_junit_validates_against_the_schema() -> None:
    schema = xmlschema.XMLSchema(Path(__file__).parent / "data" / "junit.xsd")
    schema.validate(report.to_junit(_run()))
    bad = report.to_junit(_run()).replace('name="st8"', "")
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        schema.validate(bad)


def test_junit_is_well_formed_and_counts() -> None:
    root = ET.fromstring(report.to_junit(_run()))
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["st8", "no-tph"]
    assert cases[1].find("failure") is not None and cases[0].find("failure") is None


def test_ktap_lines() -> None:
    lines = report.to_ktap(_run()).splitlines()
    assert lines[0] == "KTAP version 1" and "1..2" in lines
    assert "ok 1 st8" in lines and "not ok 2 no-tph" in lines


def test_find_bdf_walks_bridges_by_qemu_ids() -> None:
    dev = {"slot": 0, "function": 0, "qdev_id": "tphexp"}
    pci = [{"bus": 0, "devices": [
        {"slot": 4, "function": 0, "qdev_id": "rp0", "pci_bridge": {
            "bus": {"secondary": 1}, "devices": [
                {"slot": 0, "function": 0, "qdev_id": "up0", "pci_bridge": {
                    "bus": {"secondary": 2}, "devices": [
                        {"slot": 1, "function": 0, "qdev_id": "dn1", "pci_bridge": {
                            "bus": {"secondary": 4}, "devices": [dev]}}]}}]}}]}]
    assert devices.find_bdf(pci, "tphexp") == "0000:04:00.0"
    with pytest.raises(Exception, match="no PCI device 'tphimp'"):
        devices.find_bdf(pci, "tphimp")


def test_every_report_says_what_was_tested() -> None:
    run = _run()
    run.sources = {
        "qemu": {"kind": "debian", "series": "ours", "patches": 5,
                 "describe": "Debian qemu=1:10.0.13 (trixie) + our series (5 patches)"},
        "kernel": {"kind": "tree", "path": "/src/linux", "head": "ab" * 20, "dirty": True,
                   "describe": "tree /src/linux at abababababab (dirty, 1 file(s) changed)"},
    }
    text = report.table(run)
    assert "  kernel: tree /src/linux at abababababab (dirty" in text
    assert "  qemu: Debian qemu=1:10.0.13 (trixie) + our series (5 patches)" in text
    doc = json.loads(run.to_json())
    assert doc["sources"]["kernel"]["dirty"] is True
    props = ET.fromstring(report.to_junit(run)).find("testsuite/properties")
    assert props is not None
    values = {p.get("name"): p.get("value") for p in props}
    assert str(values["source.kernel"]).startswith("tree /src/linux at abababababab")
    xmlschema.XMLSchema(Path(__file__).parent / "data" / "junit.xsd").validate(
        report.to_junit(run))
    assert "# tphlab source.kernel=tree /src/linux" in report.to_ktap(run)
    md = report.markdown(Run.from_dict(doc))
    assert "- kernel: tree /src/linux" in md
    mails = {"kind": "debian", "series": "mails", "describe": "base + series from mails /m",
             "subjects": ["[PATCH v11 1/3] PCI/TPH: a", "[PATCH v11 2/3] dma-buf: b"]}
    assert "[PATCH v11 2/3] dma-buf: b" in report.describe_source(mails)
