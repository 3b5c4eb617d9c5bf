"""The revoke, hostile-input and race checks, against output recorded from a real run.

tests/data/run-tcg.json is `rig run --json` of the whole matrix on this
bench (TCG). Each check must pass on what really happened and fail on
each way a broken kernel or device would change it.
"""

from __future__ import annotations

import copy
import errno
import json
from pathlib import Path
from typing import Any

import pytest

from rig.execution import scenario_run
from rig.guest.devices import Bench
from rig.scenarios import hint_cases, hostile, matrix, race, revoke, tphctl_output
from rig.scenarios.kit import Scenario, Seen

RECORDED = json.loads((Path(__file__).parent / "data" / "run-tcg.json").read_text())
RID = 0x0600


def _case(name: str) -> Scenario:
    return next(c for c in matrix.full() if c.name == name)


def _seen(name: str) -> Seen:
    doc = next(s for s in RECORDED["scenarios"] if s["name"] == name)
    return Seen(copy.deepcopy(doc["steps"]), copy.deepcopy(doc["records"]), RID,
                doc.get("ktap", ""), dict(doc.get("dma_errors", {})))


def _rid_of_recording(name: str) -> int:
    doc = next(s for s in RECORDED["scenarios"] if s["name"] == name)
    recs = doc["records"]
    return int(recs[0]["requester-id"]) if recs else RID


def _check(name: str, seen: Seen | None = None) -> list[str]:
    seen = seen if seen is not None else _seen(name)
    seen.rid = _rid_of_recording(name)
    return _case(name).check(seen)


def _steps(seen: Seen, name: str) -> list[dict[str, Any]]:
    return [s for s in seen.steps if s["step"] == name]


def test_the_recording_covers_the_whole_matrix() -> None:
    assert [s["name"] for s in RECORDED["scenarios"]] == [c.name for c in matrix.full()]


@pytest.mark.parametrize("name", [c.name for c in matrix.full()])
def test_every_recorded_scenario_passes_its_check(name: str) -> None:
    assert _check(name) == []


def test_revoke_fails_when_a_dma_gets_through_while_revoked() -> None:
    seen = _seen("revoke-decode")
    dma = _steps(seen, "dma")[1]
    dma.update(ret=0, errno=0)
    bad = _check("revoke-decode", seen)
    assert any("dma #2 gave success, expected ENODEV" in b for b in bad), bad


def test_revoke_fails_when_the_exporter_records_after_the_revoke_point() -> None:
    seen = _seen("revoke-decode")
    # The DMA refused while revoked did arrive: it is record 1, the remapped one 2
    late = dict(seen.records[0], seq=1)
    seen.records[1:] = [late, dict(seen.records[1], seq=2)]
    bad = _check("revoke-decode", seen)
    assert any(b.startswith("the hint log holds") for b in bad), bad


def test_revoke_fails_when_the_reset_is_not_between_the_records() -> None:
    seen = _seen("revoke-reset")
    seen.records[1]["generation"] = seen.records[0]["generation"]
    bad = _check("revoke-reset", seen)
    assert any(b.startswith("the hint log holds") for b in bad), bad


def test_revoke_fails_without_an_invalidation() -> None:
    seen = _seen("revoke-reset")
    _steps(seen, "status")[0].update(invalidations=0, mapped=1)
    assert any("invalidation" in b for b in _check("revoke-reset", seen))


def test_remap_must_carry_the_current_value() -> None:
    seen = _seen("revoke-decode")
    _steps(seen, "dma")[2].update(st=revoke.A[0], ph=revoke.A[1])
    assert any("DMA #3" in b for b in _check("revoke-decode", seen))


def test_closed_device_must_refuse_a_new_attach() -> None:
    seen = _seen("revoke-close-device")
    _steps(seen, "attach")[1].update(ret=0, errno=0)
    assert any("attach #2" in b for b in _check("revoke-close-device", seen))


def test_a_set_after_attach_must_not_change_the_mapping() -> None:
    seen = _seen("change-after-attach")
    _steps(seen, "dma")[1].update(st=revoke.B[0], ph=revoke.B[1])
    assert any("DMA #2" in b for b in _check("change-after-attach", seen))


@pytest.mark.parametrize("h", hostile.cases(), ids=lambda h: h.name)
def test_each_hostile_row_fails_on_another_errno(h: hostile.Hostile) -> None:
    seen = _seen(h.name)
    target = [s for s in seen.steps if s["step"] == h.step_name][h.nth]
    other = errno.EPERM if h.errno != errno.EPERM else errno.EINVAL
    target.update(ret=-other, errno=other)
    bad = _check(h.name, seen)
    assert bad == [f"{h.label}: got {errno.errorcode[other]}, expected "
                   f"{errno.errorcode[h.errno]}"]
    assert h.received(seen) == f"got {errno.errorcode[other]}"


def test_a_hostile_row_fails_when_its_set_up_failed() -> None:
    seen = _seen("hostile-attach-twice")
    _steps(seen, "set")[0].update(ret=-errno.EINVAL, errno=errno.EINVAL)
    assert any("before the hostile input" in b for b in _check("hostile-attach-twice", seen))


def test_hostile_rows_need_the_spare_device_only_for_the_other_dmabuf() -> None:
    other = next(h for h in hostile.cases() if h.other)
    bench = Bench("0000:05:00.0", "0000:06:00.0")
    with pytest.raises(ValueError, match="no spare device"):
        other.tphctl_steps(bench)
    assert [h.name for h in hostile.cases() if h.other] == [other.name]


def test_race_formula_matches_tphctl() -> None:
    # race_value() in tphctl.c, restated: thread 2, iteration 0x45 (k % 8 == 5)
    assert race.written(2, 0x45) == (3, 0x85, 0x2045, 3)
    assert race.written(1, 7)[0] == 1 and race.written(1, 3)[0] == 2


def test_race_detects_a_torn_answer() -> None:
    seen = _seen("race-set-vs-query-ext")
    obs = _steps(seen, "race-queries")[0]["observed"]
    ok = next(o for o in obs if o[0] == 0)
    ok[2] = (ok[2] + 1) & 3           # PH of another SET than the tag's
    bad = _check("race-set-vs-query-ext", seen)
    assert any("match no single SET" in b for b in bad), bad


def test_race_detects_a_missing_namespace_answer() -> None:
    case = race.Race("x", hint_cases.DEFAULT, threads=4)
    # thread 1, k=7 wrote ST only: an extended answer with its tag is impossible
    assert not race.whole(4, True, 0, 1 << 12 | 7, (1 + 7) & 3)
    assert race.whole(4, True, -errno.EOPNOTSUPP, 0, 0)
    assert case.ext


def test_race_fails_when_nothing_ran_concurrently() -> None:
    seen = _seen("race-set-vs-query-8bit")
    obs = _steps(seen, "race-queries")[0]
    first = next(o for o in obs["observed"] if o[0] == 0)
    obs["observed"] = [list(first)] * len(obs["observed"])
    assert any("distinct value" in b for b in _check("race-set-vs-query-8bit", seen))


def test_module_reload_must_unload() -> None:
    seen = _seen("importer-module-reload")
    _steps(seen, "rmmod")[0]["ret"] = 1
    assert any("rmmod" in b for b in _check("importer-module-reload", seen))


def test_after_checks_find_leaks_and_splats() -> None:
    checked = scenario_run.after_checks("x\ntphlab-dmabufs: 0\n")
    assert (checked.dmesg.reports, checked.failures) == ([], [])
    bad = scenario_run.after_checks("tphlab-dmabufs: 2\n").failures
    assert bad == ["2 dma-buf(s) still alive after the scenario: a leak"]
    bad = scenario_run.after_checks("tphlab-dmabufs: \n").failures
    assert bad and "debugfs" in bad[0]
    checked = scenario_run.after_checks("BUG: KASAN: slab-use-after-free in x\n"
                                  "tphlab-dmabufs: 0\n")
    splats = checked.dmesg.reports
    assert splats and checked.failures == [f"dmesg: {splats[0]}"]


def test_a_scenario_output_splits_from_its_after_checks() -> None:
    step = '{"step": "get", "ret": 0, "errno": 0}'
    mark = f"\n{scenario_run.AFTER_MARK}\n"
    # A JSON-looking kernel line after the mark is not a step of the scenario.
    own, after = scenario_run.split_after(f"{step}\n{mark}{{x}}\ntphlab-dmabufs: 0\n")
    assert tphctl_output.split(own) == ([json.loads(step)], [])
    assert scenario_run.after_checks(after).failures == []
    # A scenario that printed nothing.
    own, after = scenario_run.split_after(f"{mark}tphlab-dmabufs: 1\n")
    assert own == "" and scenario_run.after_checks(after).failures == [
        "1 dma-buf(s) still alive after the scenario: a leak"]


def test_a_step_cut_short_is_a_failure_and_the_kernel_report_still_found() -> None:
    # tphctl killed mid-line (say, by an oops in its ioctl): its last line has
    # no newline, AFTER's mark must still start a line of its own.
    step = '{"step": "get", "ret": 0, "errno": 0}'
    out = (f"{step}\n{{\"step\": \"race-queries\", \"seen\": [0"
           f"\n{scenario_run.AFTER_MARK}\nBUG: kernel NULL pointer dereference\n"
           "tphlab-dmabufs: 0\n")
    own, after = scenario_run.split_after(out)
    steps, garbled = tphctl_output.split(own)
    assert steps == [json.loads(step)]
    assert garbled == ['{"step": "race-queries", "seen": [0']
    splats = scenario_run.after_checks(after).dmesg.reports
    assert splats == ["BUG: kernel NULL pointer dereference"]


def test_without_the_mark_the_leak_check_did_not_run() -> None:
    own, after = scenario_run.split_after('{"step": "get", "ret": 0, "errno": 0}\n')
    assert tphctl_output.split(own)[0] and after == ""
    assert scenario_run.after_checks(after).failures == [
        "could not count live dma-bufs (is debugfs mounted in the guest?)"]


def test_long_dma_fails_when_a_record_arrives_after_the_revoke_point() -> None:
    seen = _seen("revoke-during-long-dma")
    late = dict(seen.records[-2], seq=seen.records[-1]["seq"])
    seen.records[-1:] = [late, dict(seen.records[-1], seq=late["seq"] + 1)]
    bad = _check("revoke-during-long-dma", seen)
    assert any(b.startswith("the hint log holds seq") for b in bad), bad


def test_long_dma_fails_when_the_revocation_waits_for_it() -> None:
    seen = _seen("revoke-during-long-dma")
    next(s for s in seen.steps if s["step"] == "decode").update(ms=5000)
    bad = _check("revoke-during-long-dma", seen)
    assert any("the revocation (decode off) took 5000 ms" in b for b in bad), bad


def test_long_dma_fails_when_the_dma_is_not_stopped() -> None:
    seen = _seen("revoke-during-long-dma")
    w = next(s for s in seen.steps if s["step"] == "dma-wait")
    w.update(ret=0, errno=0, done=w["count"])
    bad = _check("revoke-during-long-dma", seen)
    assert any("expected ENODEV, stopped by the revocation" in b for b in bad), bad


def test_two_attachments_fail_when_they_share_a_tag() -> None:
    seen = _seen("two-attachments")
    seen.records[1] = dict(seen.records[1], st=seen.records[0]["st"], ph=seen.records[0]["ph"])
    bad = _check("two-attachments", seen)
    assert any(b.startswith("the hint log holds") for b in bad), bad


def test_revoke_fails_when_get_pci_tph_answers_while_revoked() -> None:
    seen = _seen("revoke-decode")
    _steps(seen, "status")[0].update(query_ret=0)
    bad = _check("revoke-decode", seen)
    assert any("the exporter's TPH query returned success, expected ENODEV" in b
               for b in bad), bad


@pytest.mark.parametrize("name", ["hostile-set-fd-minus-1", "hostile-set-closed-fd"])
def test_a_bad_fd_answered_with_einval_fails(name: str) -> None:
    seen = _seen(name)
    st = next(s for s in seen.steps if s["step"] == "set-raw")
    st.update(ret=-22, errno=22)
    bad = _check(name, seen)
    assert bad and any("EINVAL" in b and "EBADF" in b for b in bad), bad
