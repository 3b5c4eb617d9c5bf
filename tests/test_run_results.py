"""Results as data: the orchestration with a fake guest, the Run's JSON, and `rig report`.

No QEMU: the runner's guests come from a FakeLab (runner.Options.vm_factory,
or bringup.VM for the CLI), which answers the QMP and shell commands the
runner sends and dies, hangs or breaks where a test says.
"""

from __future__ import annotations

import ast
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import xmlschema

from rig import hostfacts
from rig.builder import artifacts
from rig.cli import guest as cli_guest
from rig.errors import AccelError, GuestError, RigError
from rig.execution import runner
from rig.guest import bringup, budget
from rig.guest import vm as vm_mod
from rig.guest.devices import Bench
from rig.guest.topology import Topology
from rig.results import report
from rig.results.run import (
    BUG_FIX,
    EXIT_GUEST,
    EXIT_INTERNAL,
    Outcome,
    Problem,
    Run,
    Status,
)
from rig.scenarios import matrix
from tests.fakes import (
    STEP,
    TCG,
    A,
    B,
    C,
    FakeCase,
    FakeLab,
    fake_arts,
    mismatch,
    raises_key_error,
    run_rig,
)

DATA = Path(__file__).parent / "data"
SCHEMA = xmlschema.XMLSchema(DATA / "junit.xsd")


def _lab_run(lab: FakeLab, cases: list[FakeCase], tmp_path: Path, jobs: int = 2) -> Run:
    arts = fake_arts(tmp_path)
    rundir = tmp_path / "run"
    rundir.mkdir(exist_ok=True)
    return runner.run_matrix(cases, arts, TCG, rundir,
                             opts=runner.Options(jobs=jobs, vm_factory=lab.factory))


def _statuses(run: Run) -> dict[str, Status]:
    return {o.name: o.status for o in run.outcomes}


THREE = [FakeCase("a1", A), FakeCase("a2", A), FakeCase("b1", B), FakeCase("b2", B),
         FakeCase("b3", B), FakeCase("c1", C), FakeCase("c2", C)]


@pytest.fixture
def fake_rig(monkeypatch: pytest.MonkeyPatch, cache_home: Path,
             tmp_path: Path) -> Iterator[tuple[FakeLab, list[FakeCase]]]:
    """`rig run` with the builds faked, the fake lab's guests and THREE's scenarios
    (a test may change the list it gets)."""
    arts = fake_arts(tmp_path)
    built = SimpleNamespace(guest=lambda: arts, sources=lambda: {
        "qemu": {"describe": "fake qemu"},
        "kernel": {"describe": "fake kernel + series from mails",
                   "subjects": ["[PATCH v9 1/3] PCI/TPH: a", "[PATCH v9 2/3] dma-buf: b"]}})
    lab = FakeLab()
    cases = list(THREE)
    monkeypatch.setattr(artifacts, "build", lambda request, progress: built)
    monkeypatch.setattr(vm_mod, "require_device", lambda qemu: None)
    monkeypatch.setattr(bringup, "VM", lab.factory)
    monkeypatch.setattr(matrix, "full", lambda: cases)
    yield lab, cases


# --- a guest that dies, hangs or does not boot ---------------------------------------------

def test_a_killed_guest_marks_its_own_scenarios_and_the_others_pass(
        fake_rig: tuple[FakeLab, list[FakeCase]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    lab, _ = fake_rig
    lab.fate["b2"] = "kill"
    js, junit = tmp_path / "run.json", tmp_path / "junit.xml"
    rc, out, err = run_rig(capsys, "run", "--accel", "tcg", "--json", str(js),
                           "--junit", str(junit))
    assert rc == EXIT_GUEST, out + err
    doc = json.loads(js.read_text())
    status = {s["name"]: s["status"] for s in doc["scenarios"]}
    assert status == {"a1": "PASS", "a2": "PASS", "b1": "PASS", "b2": "CRASHED",
                      "b3": "NOT_RUN", "c1": "PASS", "c2": "PASS"}
    assert doc["exit_code"] == EXIT_GUEST and doc["passed"] is False
    b2 = next(s for s in doc["scenarios"] if s["name"] == "b2")
    assert "QEMU exited with status -9" in b2["failures"][0] and "console.log" in b2["failures"][0]
    b3 = next(s for s in doc["scenarios"] if s["name"] == "b3")
    assert b3["failures"] == ["not run: the guest (beta) died in scenario b2"]
    assert [e["code"] for e in doc["errors"]] == [EXIT_GUEST]
    # The error as the rig prints it: what died, the console's path and last lines.
    assert "guest beta, scenario b2: QEMU exited with status -9" in err
    assert "console.log, last lines:" in err and "    | tphlab-ready" in err
    assert "logs kept in" in err
    # JUnit: valid, an <error> for the crash, <skipped> for what never ran.
    SCHEMA.validate(junit.read_text())
    suite = ET.fromstring(junit.read_text()).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped")) == ("7", "0", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    error = cases["b2"].find("error")
    assert error is not None and error.get("type") == "crashed"
    assert "QEMU exited with status -9" in (error.get("message") or "")
    assert cases["b3"].find("skipped") is not None
    assert all(cases[n].find("error") is None and cases[n].find("skipped") is None
               for n in ("a1", "a2", "b1", "c1", "c2"))
    # Every guest was stopped.
    assert all(g.stopped.is_set() for g in lab.guests)


def test_a_hung_guest_is_crashed_and_only_its_topology_stops(tmp_path: Path) -> None:
    lab = FakeLab(fate={"a1": "hang"})
    run = _lab_run(lab, THREE, tmp_path)
    assert _statuses(run) == {"a1": Status.CRASHED, "a2": Status.NOT_RUN, "b1": Status.PASS,
                              "b2": Status.PASS, "b3": Status.PASS, "c1": Status.PASS,
                              "c2": Status.PASS}
    assert run.exit_code == EXIT_GUEST
    assert "the guest stopped answering" in run.outcomes[0].failures[0]
    assert "did not finish in 60 s" in run.problems[0].message
    assert set(run.boots) == {"alpha", "beta", "gamma"}


def test_a_guest_that_dies_right_after_a_scenario_crashes_that_one(tmp_path: Path) -> None:
    lab = FakeLab(fate={"c1": "die-after"})
    run = _lab_run(lab, THREE, tmp_path, jobs=1)
    o = run.outcomes[5]
    assert (o.name, o.status) == ("c1", Status.CRASHED)
    # What it saw before the guest died is kept; the log died with QEMU
    assert o.steps, "the steps it printed are kept"
    assert any("hint log could not be read" in f for f in o.failures), o.failures
    assert "QEMU exited with status -11" in o.failures[-1]
    assert run.outcomes[6].status is Status.NOT_RUN
    assert run.count(Status.PASS) == 5 and run.exit_code == EXIT_GUEST


def test_guests_share_the_budget_by_busy_vcpus(tmp_path: Path, cache_home: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-vCPU guest takes one slot of two while its scenario keeps one vCPU busy,
    so a 1-vCPU guest runs beside it; a scenario keeping both busy runs alone."""
    monkeypatch.setenv(budget.BUDGET_ENV, "2")
    duo = Topology(name="duo", cpus=2)
    cases = [FakeCase("duo-one", duo), FakeCase("duo-both", duo, busy_vcpus=2),
             FakeCase("duo-one-again", duo), FakeCase("beta-1", B), FakeCase("beta-2", B),
             FakeCase("gamma-1", C), FakeCase("gamma-2", C)]
    lab = FakeLab(seconds=0.3)
    run = _lab_run(lab, cases, tmp_path)
    assert all(o.status is Status.PASS for o in run.outcomes), run.outcomes
    ran = {name: (start, end) for name, start, end in lab.ran}

    def beside(name: str) -> list[str]:
        start, end = ran[name]
        return [n for n, (s, e) in ran.items() if n != name and s < end and e > start]

    assert beside("duo-one") or beside("duo-one-again"), lab.ran
    assert beside("duo-both") == [], lab.ran


def test_a_guest_that_does_not_boot_leaves_its_scenarios_not_run(tmp_path: Path) -> None:
    lab = FakeLab(boot_error={"beta": GuestError("SSH to the guest on 127.0.0.1:1 failed for "
                                                 "20 s: refused")})
    run = _lab_run(lab, THREE, tmp_path)
    assert [o.status for o in run.outcomes if o.topology == "beta"] == [Status.NOT_RUN] * 3
    assert run.outcomes[2].failures == [
        "not run: the guest (beta) did not boot: SSH to the guest on 127.0.0.1:1 failed for "
        "20 s: refused"]
    assert run.count(Status.PASS) == 4 and "beta" not in run.boots
    assert run.exit_code == EXIT_GUEST
    # A set-up error (QEMU refusing its command line) is exit 2.
    lab = FakeLab(boot_error={"gamma": RigError("QEMU exited (1) during boot after stage qemu")})
    run = _lab_run(lab, THREE, tmp_path)
    assert run.exit_code == 2 and run.count(Status.NOT_RUN) == 2


def test_kvm_refusing_a_guest_boots_no_more_guests(tmp_path: Path) -> None:
    """--accel kvm and a guest that does not reach /init: exit 2, and no other guest boots."""
    why = "--accel kvm: the guest (alpha) did not reach /init under KVM (last boot stage: kernel)"
    lab = FakeLab(boot_error={"alpha": AccelError(why)})
    run = _lab_run(lab, THREE, tmp_path, jobs=1)
    assert run.exit_code == 2 and run.count(Status.NOT_RUN) == 7
    assert run.outcomes[0].failures == [f"not run: the guest (alpha) did not boot: {why}"]
    assert run.outcomes[2].failures == [f"not run: no guest was booted after: {why}"]
    assert [g.topo.name for g in lab.guests] == ["alpha"]


# --- the rig or a check breaking ------------------------------------------------------------

def test_a_check_that_raises_is_an_error_with_its_traceback_and_the_rest_still_run(
        fake_rig: tuple[FakeLab, list[FakeCase]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, cases = fake_rig
    cases[0] = FakeCase("a1", A, verify=raises_key_error)
    js = tmp_path / "run.json"
    rc, out, err = run_rig(capsys, "run", "--accel", "tcg", "--json", str(js))
    assert rc == EXIT_INTERNAL, out + err
    run = Run.from_json(js.read_text())
    assert _statuses(run)["a1"] is Status.ERROR
    assert [o.status for o in run.outcomes[1:]] == [Status.PASS] * 6
    assert run.logs is not None
    log = (run.logs / "run.log").read_text()
    assert "Traceback (most recent call last)" in log and "KeyError: 'no-such-field'" in log
    assert "raises_key_error" in log
    a1 = run.outcomes[0]
    assert a1.failures == [f"internal error: the check raised KeyError: 'no-such-field' "
                           f"(traceback in {run.logs / 'run.log'})"]
    assert a1.steps, "what the scenario produced is kept for the check's author"
    assert run.problems[0].code == EXIT_INTERNAL
    assert "a1: internal error: the check raised KeyError" in out
    assert f"log: {run.logs / 'run.log'}" in err


def test_a_rig_bug_outside_the_check_is_an_error_and_the_next_scenario_runs(
        tmp_path: Path) -> None:
    class Broken(FakeCase):
        def command(self, bench: Bench) -> str:
            raise ValueError(f"{self.name}: topology {self.topo.name} has no spare device")

    cases: list[FakeCase] = [Broken("a1", A), FakeCase("a2", A, verify=mismatch)]
    run = _lab_run(FakeLab(), cases, tmp_path)
    assert _statuses(run) == {"a1": Status.ERROR, "a2": Status.FAIL}
    assert "ValueError: a1: topology alpha has no spare device" in run.outcomes[0].failures[0]
    assert run.exit_code == EXIT_INTERNAL
    assert "ValueError" in (tmp_path / "run" / "run.log").read_text()


def test_one_policy_makes_a_problem_of_any_exception() -> None:
    err = GuestError("the guest is gone", fix="look at its console", log="console.log")
    assert Problem.of(err, "guest a", "run.log", "a") == Problem(
        EXIT_GUEST, "guest a: the guest is gone", "console.log", "look at its console", "a")
    assert Problem.of(KeyError("x"), "guest a", "run.log", "a") == Problem(
        EXIT_INTERNAL, "guest a: internal error: KeyError: 'x'", "run.log", BUG_FIX, "a")
    # Without a log of its traceback, a bug has no fix to offer either.
    assert Problem.of(KeyError("x")) == Problem(EXIT_INTERNAL, "internal error: KeyError: 'x'")


def test_exit_codes_the_highest_wins() -> None:
    def run_of(*statuses: Status, codes: tuple[int, ...] = ()) -> Run:
        outs = [Outcome(f"s{i}", "t", s) for i, s in enumerate(statuses)]
        return Run("tcg", outs, problems=[Problem(c, "x") for c in codes])

    assert run_of(Status.PASS).exit_code == 0
    assert run_of(Status.PASS, Status.FAIL).exit_code == 1
    assert run_of(Status.NOT_RUN, codes=(2,)).exit_code == 2
    assert run_of(Status.FAIL, Status.CRASHED, Status.NOT_RUN, codes=(3,)).exit_code == 3
    assert run_of(Status.CRASHED, Status.ERROR, codes=(3, 4)).exit_code == 4
    interrupted = run_of(Status.PASS, Status.NOT_RUN)
    interrupted.interrupted = True
    assert interrupted.exit_code == 130
    assert run_of().exit_code == 1, "a run of nothing did not pass"
    # A contract difference only (another series): 5, so CI can tell it from a fault
    assert run_of(Status.PASS, Status.DIFFERS).exit_code == 5
    assert run_of(Status.DIFFERS, Status.FAIL).exit_code == 1, "a fault wins"
    assert run_of(Status.DIFFERS, Status.NOT_RUN, codes=(3,)).exit_code == 3
    assert run_of(Status.DIFFERS, Status.NOT_RUN).exit_code == 1


def test_an_internal_error_of_a_command_exits_4_with_the_traceback_in_a_log(
        monkeypatch: pytest.MonkeyPatch, cache_home: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: object) -> int:
        raise KeyError("boom")

    monkeypatch.setattr(cli_guest, "cmd_stop", broken)
    rc, _, err = run_rig(capsys, "stop")
    assert rc == EXIT_INTERNAL
    assert "internal error of the rig: KeyError: 'boom'" in err
    logs = list((cache_home / "logs").glob("internal-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()
    assert str(logs[0]) in err and "Traceback" not in err


# --- Ctrl-C ---------------------------------------------------------------------------------

def test_ctrl_c_stops_the_guests_and_keeps_what_finished(
        monkeypatch: pytest.MonkeyPatch, fake_rig: tuple[FakeLab, list[FakeCase]],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab, _ = fake_rig
    lab.fate["b1"] = lab.fate["c1"] = "block"
    calls = []

    def wait(fs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:      # Ctrl-C once alpha has finished and beta is in b1
            assert lab.event("b1").wait(10)
            futures.wait(fs[:1])
            raise KeyboardInterrupt
        return futures.wait(fs)

    monkeypatch.setattr(runner, "wait_futures", wait)
    monkeypatch.setattr(hostfacts, "jobs", lambda: 2)
    js, junit = tmp_path / "run.json", tmp_path / "junit.xml"
    started = time.monotonic()
    rc, out, err = run_rig(capsys, "run", "--accel", "tcg", "--json", str(js),
                           "--junit", str(junit))
    assert rc == 130 and time.monotonic() - started < 10
    assert "interrupted" in err
    run = Run.from_json(js.read_text())
    assert run.interrupted
    st = _statuses(run)
    assert (st["a1"], st["a2"]) == (Status.PASS, Status.PASS)
    assert [st[n] for n in ("b1", "b2", "b3", "c1", "c2")] == [Status.NOT_RUN] * 5
    assert run.outcomes[2].failures == ["not run: the run was interrupted"]
    SCHEMA.validate(junit.read_text())
    assert all(g.stopped.is_set() for g in lab.guests)
    assert "; interrupted" in out


def test_a_set_up_error_before_the_run_still_writes_the_reports(
        monkeypatch: pytest.MonkeyPatch, fake_rig: tuple[FakeLab, list[FakeCase]],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def no_build(request: object, progress: object) -> None:
        raise RigError("the kernel build failed", log="/x/build.log", fix="read the log")

    monkeypatch.setattr(artifacts, "build", no_build)
    js, junit = tmp_path / "run.json", tmp_path / "junit.xml"
    rc, _, err = run_rig(capsys, "run", "--json", str(js), "--junit", str(junit))
    assert rc == 2 and "error: the kernel build failed" in err
    run = Run.from_json(js.read_text())
    assert run.count(Status.NOT_RUN) == len(THREE) and run.exit_code == 2
    assert run.outcomes[0].failures == ["not run: the run did not start: the kernel build failed"]
    assert run.problems == [Problem(2, "the kernel build failed", "/x/build.log", "read the log")]
    SCHEMA.validate(junit.read_text())


# --- the run as data, and rig report --------------------------------------------------------

def _mixed(fake_rig: tuple[FakeLab, list[FakeCase]]) -> None:
    """One scenario of each status."""
    lab, cases = fake_rig
    cases[0] = FakeCase("a1", A, verify=raises_key_error)
    cases[1] = FakeCase("a2", A, verify=mismatch,
                        did="ST_EXT=0x1a1 PH=1, attach, DMA; decode off, DMA, SET ST_EXT=0x1a2 "
                            "PH=2, decode on, DMA, and then a great deal more besides")
    lab.fate["b2"] = "kill"


@pytest.mark.parametrize("fmt", ["table", "ktap"])
def test_rig_report_reproduces_the_run_byte_for_byte(
        fmt: str, fake_rig: tuple[FakeLab, list[FakeCase]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _mixed(fake_rig)
    js, junit = tmp_path / "run.json", tmp_path / "junit.xml"
    extra = ["--ktap"] if fmt == "ktap" else []
    rc, printed, _ = run_rig(capsys, "run", "--accel", "tcg", "--json", str(js), "--junit",
                          str(junit), *extra)
    assert rc == EXIT_INTERNAL
    again = tmp_path / "again.xml"
    rc, reprinted, err = run_rig(capsys, "report", str(js), "--junit", str(again), *extra)
    assert rc == 0, err
    assert reprinted == printed
    assert again.read_bytes() == junit.read_bytes()
    # The run directory's copies are the same reports.
    run = Run.from_json(js.read_text())
    assert run.logs is not None
    assert (run.logs / "junit.xml").read_bytes() == junit.read_bytes()
    assert (run.logs / "run.json").read_text() == js.read_text()
    if fmt == "ktap":
        assert (run.logs / "run.ktap").read_text() == printed
        lines = printed.splitlines()
        assert "not ok 1 a1 # ERROR the rig or the check broke" in lines
        assert "# a1: internal error: the check raised KeyError: 'no-such-field' (traceback " \
               f"in {run.logs / 'run.log'})" in lines
        assert "not ok 2 a2" in lines and "ok 3 b1" in lines
        assert "not ok 4 b2 # ERROR its guest died or hung" in lines
        assert "ok 5 b3 # SKIP not run" in lines
        assert "# b3: not run: the guest (beta) died in scenario b2" in lines
    else:
        assert printed.startswith("ERROR") and "CRASHED" in printed


def test_the_table_fits_100_columns_and_the_json_keeps_the_whole_text(
        fake_rig: tuple[FakeLab, list[FakeCase]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _mixed(fake_rig)
    js = tmp_path / "run.json"
    _, out, _ = run_rig(capsys, "run", "--accel", "tcg", "--json", str(js))
    # Only a word longer than a line (a path) is not broken.
    assert all(len(ln) <= 100 or len(ln.split()) == 1 for ln in out.splitlines()), out
    assert "; console\n      /" in out and "(traceback in\n      /" in out
    assert "decode on, DMA, and then a great deal more besides" not in out, "it was wrapped"
    assert "besides" in out
    doc = json.loads(js.read_text())
    assert doc["scenarios"][1]["set"].endswith("decode on, DMA, and then a great deal more "
                                               "besides")
    lines = out.splitlines()
    # One line per scenario first, in order: verdict, time, name
    brief = [ln.split()[:3] for ln in lines[:7]]
    assert [(b[0], b[2]) for b in brief] == [
        ("ERROR", "a1"), ("FAIL", "a2"), ("PASS", "b1"), ("CRASHED", "b2"), ("NOT_RUN", "b3"),
        ("PASS", "c1"), ("PASS", "c2")]
    # Then the whole rows of those that did not pass, and only theirs
    at = lines.index(next(ln for ln in lines if ln.split()[:2] == ["scenario", "set"]))
    header, rule = lines[at:at + 2]
    assert header.split() == ["scenario", "set", "received", "verdict", "time"]
    assert len(rule) <= 100
    verdicts = [ln[header.index("verdict"):].split()[0] for ln in lines[at + 2:]
                if ln[:1] not in (" ", "") and len(ln) > header.index("verdict")
                and not ln[0].isdigit()]
    assert verdicts == ["ERROR", "FAIL", "CRASHED", "NOT_RUN"]
    assert "5 scenarios passed" not in out and "3/7 scenarios passed (1 fail, 1 error, " \
        "1 crashed, 1 not run)" in out


def test_a_passing_run_prints_a_line_per_scenario_and_a_short_footer(
        fake_rig: tuple[FakeLab, list[FakeCase]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """What `rig run` prints on a pipe when all pass: one line per scenario,
    the summary and a footer of at most 12 lines, none over 100 columns;
    `rig report -v` prints every scenario's whole row too."""
    js = tmp_path / "run.json"
    rc, out, _ = run_rig(capsys, "run", "--accel", "tcg", "--json", str(js))
    assert rc == 0
    lines = out.splitlines()
    n = len(THREE)
    assert [ln.split()[0] for ln in lines[:n]] == ["PASS"] * n
    assert lines[n] == f"{n}/{n} scenarios passed"
    assert len(lines) - n <= 12 and all(len(ln) <= 100 for ln in lines)
    rc, full, _ = run_rig(capsys, "report", "-v", str(js))
    assert rc == 0 and full.splitlines()[:n] == lines[:n]
    assert sum(ln.split()[:2] == ["scenario", "set"] for ln in full.splitlines()) == 1
    assert len(full.splitlines()) > len(lines)


def test_the_recorded_matrix_prints_within_the_limits(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The whole recorded matrix, as `rig report` prints it: one line per
    scenario, a footer of at most 12 lines, nothing over 100 columns."""
    rc, out, err = run_rig(capsys, "report", str(DATA / "run-tcg.json"))
    assert rc == 0, err
    doc = json.loads((DATA / "run-tcg.json").read_text())
    n = len(doc["scenarios"])
    lines = out.splitlines()
    assert lines[n] == f"{n}/{n} scenarios passed"
    assert len(lines) - n <= 12, lines[n:]
    assert all(len(ln) <= 100 for ln in lines), [ln for ln in lines if len(ln) > 100]
    # A long DMA's records that do not fit are folded before the line is cut
    long_dma = next(ln for ln in lines if ln.split()[2] == "revoke-during-long-dma")
    assert long_dma.split()[3:5] == [str(len(next(
        s for s in doc["scenarios"] if s["name"] == "revoke-during-long-dma")["records"]) - 1),
        "x"], long_dma
    assert "x16384B" not in long_dma


def test_folded_records_count_each_run_of_equal_hints() -> None:
    rec = {"th": True, "st": 0x1A3, "ph": 3, "ext": True, "length": 16384, "direction": "write"}
    records = [rec] * 176 + [{**rec, "direction": "read", "length": 64}]
    assert report.records_summary(records) == ("176 x TH=1 PH=3 ST=0x1a3 ext 16 KiB; "
                                               "TH=1 PH=3 ST=0x1a3 ext 64B read")
    assert report.records_summary([]) == "nothing"


def test_a_run_round_trips_through_json(fake_rig: tuple[FakeLab, list[FakeCase]],
                                        tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _mixed(fake_rig)
    js = tmp_path / "run.json"
    run_rig(capsys, "run", "--accel", "tcg", "--json", str(js))
    run = Run.from_json(js.read_text())
    assert Run.from_json(run.to_json()) == run
    assert run.to_json() == js.read_text()
    doc = json.loads(js.read_text())
    keys = {"accel", "accel_reason", "passed", "boots", "logs", "sources", "scenarios",
            "errors", "exit_code", "interrupted"}
    assert keys <= set(doc)
    assert {"name", "summary", "topology", "set", "received", "passed", "status", "seconds",
            "failures", "steps", "records", "dmesg"} <= set(doc["scenarios"][0])
    b1 = next(o for o in run.outcomes if o.name == "b1")
    assert b1.records[0]["st"] == 0x42 and b1.records[0]["generation"] == 1
    assert doc["sources"]["kernel"]["subjects"][0] == "[PATCH v9 1/3] PCI/TPH: a"


def test_each_scenario_keeps_its_raw_output_in_the_run_directory(tmp_path: Path) -> None:
    run = _lab_run(FakeLab(), [FakeCase("a1", A)], tmp_path)
    out = Path(str(run.outcomes[0].output))
    assert out == tmp_path / "run" / "alpha" / "scenarios" / "a1"
    assert (out / "tphctl.out").read_text().startswith(STEP)
    assert json.loads((out / "qmp.json").read_text()) == run.outcomes[0].records != []
    assert "tphlab-dmabufs: 0" in (out / "dmesg.out").read_text()
    assert (out / "stderr.out").read_text() == ""
    assert "alpha: a1: PASS" in (tmp_path / "run" / "run.log").read_text()


def test_a_report_from_before_status_still_renders(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_rig(capsys, "report", str(DATA / "run-before-status.json"))
    assert rc == 0, err
    doc = json.loads((DATA / "run-before-status.json").read_text())
    assert f"{len(doc['scenarios'])}/{len(doc['scenarios'])} scenarios passed" in out
    run = Run.from_json((DATA / "run-before-status.json").read_text())
    assert run.outcomes[0].status is Status.PASS and run.exit_code == 0
    assert all(len(ln) <= 100 for ln in out.splitlines())


def test_rig_report_markdown_and_the_summary_alias(
        fake_rig: tuple[FakeLab, list[FakeCase]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _mixed(fake_rig)
    js = tmp_path / "run.json"
    run_rig(capsys, "run", "--accel", "tcg", "--json", str(js))
    rc, md, _ = run_rig(capsys, "report", str(js), "--markdown")
    assert rc == 0
    assert md.startswith("### tphlab: 3/7 scenarios passed (accel tcg (asked for with")
    assert "| b2 | ST=0x42 PH=2 |  | **CRASHED** |" in md
    assert "| b3 | ST=0x42 PH=2 |  | NOT_RUN |" in md and "| a1 |" in md
    assert "- error: guest beta, scenario b2: QEMU exited with status -9" in md
    rc, old, err = run_rig(capsys, "summary", str(js))
    assert rc == 0 and old == md and "deprecated" in err


def test_rig_report_refuses_what_is_not_a_run(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"accel": "tcg"}')
    rc, _, err = run_rig(capsys, "report", str(bad))
    assert rc == 2 and "not a tphlab run report" in err and "fix:" in err
    rc, _, err = run_rig(capsys, "report", str(tmp_path / "missing.json"))
    assert rc == 2 and "cannot read the run report" in err


def test_reports_need_no_runner_nor_scenario() -> None:
    """The renderers read the Run alone: rig.results.report imports run.py, not runner."""
    src = (Path(report.__file__)).read_text()
    mods = {n.module for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)}
    assert "rig.results.run" in mods
    assert not any(m and (m.endswith("runner") or m.startswith("rig.scenarios"))
                   for m in mods)
