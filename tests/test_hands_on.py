"""Hands-on use without QEMU: the topologies `rig boot` offers, the guest's role
file, the session's roles, `rig hints --device/--since/--follow`, `rig run
--keep-guest` (with test_run_results' fake guests) and `tphctl --help`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rig.builder import artifacts
from rig.builder.artifacts import Artifacts
from rig.cli import guest as cli_guest
from rig.errors import RigError
from rig.execution import control, runlog, runner
from rig.guest import boot_session, bringup, devices, topology
from rig.guest import vm as vm_mod
from rig.guest.boot_session import Session
from rig.guest.devices import Bench, Benches
from rig.guest.topology import Device, Topology
from rig.results.run import Status
from rig.scenarios import hint_cases, matrix

from .fakes import (
    TCG,
    A,
    B,
    C,
    FakeCase,
    FakeGuest,
    FakeLab,
    FakeProc,
    FakeShell,
    fake_arts,
    mismatch,
    run_rig,
)

REPO = Path(__file__).resolve().parent.parent
TPHCTL = REPO / "guest-image/tphctl.c"
BENCH = Bench("0000:03:00.0", "0000:04:00.0", "0000:05:00.0")
DEVICES = [Device("exporter", "tphexp", "0000:03:00.0"),
           Device("importer", "tphimp", "0000:04:00.0"),
           Device("spare", "tphspare", "0000:05:00.0")]


# --- the topologies ------------------------------------------------------------------------

def test_every_topology_of_the_matrix_is_listed_once_with_its_scenarios() -> None:
    topos = matrix.topologies()
    names = [t.name for t, _ in topos]
    assert names == list(dict.fromkeys(c.topo.name for c in matrix.full()))
    assert names[0] == "default" and topos[0][0] == hint_cases.DEFAULT
    assert "rp-no-completer" in names and "pci-notph" in names
    assert sum(len(members) for _, members in topos) == len(matrix.full())
    assert matrix.topology("rp-no-completer") == hint_cases.RP_NO_COMPLETER


def test_rig_boot_list_topologies_builds_nothing(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    def no_build(*a: object) -> None:
        raise AssertionError("--list-topologies must not build")

    monkeypatch.setattr(artifacts, "build", no_build)
    rc, out, _ = run_rig(capsys, "boot", "--list-topologies")
    assert rc == 0
    for topo, members in matrix.topologies():
        assert re.search(rf"^{re.escape(topo.name)}\b", out, re.M), out
        assert members[0] in out
    assert "default (rig boot default)" in out
    assert "root port completer none" in out          # rp-no-completer's setting
    assert "kernel pci=notph" in out


def test_rig_boot_unknown_topology_names_them_all(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(artifacts, "build", lambda *a: pytest.fail("built"))
    rc, _, err = run_rig(capsys, "boot", "--topology", "no-such")
    assert rc == RigError("x").exit_code
    assert "--topology no-such: the matrix has no such topology" in err
    assert all(t.name in err for t, _ in matrix.topologies())


def test_topology_roles_and_description() -> None:
    assert hint_cases.DEFAULT.roles() == ["exporter", "importer", "spare"]
    assert hint_cases.RP_NO_COMPLETER.roles() == ["exporter", "importer"]
    assert Topology().describe() == ("root port completer ext; exporter tph-completer=ext; "
                                     "importer ext-tph=on")


# --- the role file -------------------------------------------------------------------------

def test_the_role_file_lists_each_device_as_role_bdf_qomid() -> None:
    text = topology.devices_text(BENCH.devices())
    assert text.splitlines()[1:] == ["exporter 0000:03:00.0 tphexp",
                                     "importer 0000:04:00.0 tphimp",
                                     "spare 0000:05:00.0 tphspare"]
    assert text.startswith("#") and text.endswith("\n")
    assert topology.parse_devices(text) == DEVICES
    no_spare = Bench("0000:03:00.0", "0000:04:00.0").devices()
    assert [d.role for d in no_spare] == ["exporter", "importer"]
    assert DEVICES[1].requester_id == 0x0400 and DEVICES[0].qom_path == \
        "/machine/peripheral/tphexp"


def test_the_role_file_command_writes_exactly_that_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "etc/tphlab/devices"
    monkeypatch.setattr(topology, "DEVICES_FILE", str(dest))
    subprocess.run(["sh", "-c", devices.devices_command(Benches({A.name: BENCH}))], check=True)
    assert dest.read_text() == topology.devices_text(BENCH.devices())


class RecordingShell(FakeShell):
    def __init__(self, guest: FakeGuest) -> None:
        super().__init__(guest)
        self.commands: list[str] = []

    def run(self, command: str, timeout: float = 60.0) -> Any:
        self.commands.append(command)
        return super().run(command, timeout)


def test_bind_devices_writes_the_role_file_in_the_same_command(tmp_path: Path) -> None:
    guest = FakeGuest(FakeLab(), A, tmp_path, "tcg", fake_arts(tmp_path))
    guest.start()
    shell = RecordingShell(guest)
    guest.shell = shell
    bench = devices.bind_devices(guest)
    assert bench == Benches({A.name: Bench("0000:00:03.0", "0000:00:04.0")})
    bind = shell.commands[0]
    assert bind.startswith("tphlab-bind 0000:00:03.0 0000:00:04.0 ")
    assert f" && {devices.devices_command(bench)} && " in bind
    assert "exporter 0000:00:03.0 tphexp" in bind and "importer 0000:00:04.0 tphimp" in bind
    # and how tphctl opens the exporter, from the topology (no IOMMU: noiommu)
    assert bind.endswith("echo noiommu > /etc/tphlab/vfio")


# --- the session's roles and --device ------------------------------------------------------

def _session(**changes: Any) -> Session:
    base = Session(4242, 40123, "/run/qmp.sock", "/run/console.log", "/k/id", "/k/host",
                   "tcg", "default", tuple(DEVICES))
    return replace(base, **changes)


def test_the_session_file_keeps_the_roles(cache_home: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Session, "alive", lambda self: True)
    sess = _session(topology="rp-no-completer")
    sess.save()
    data = json.loads(boot_session.state_path().read_text())
    assert data["topology"] == "rp-no-completer"
    assert data["devices"][1] == {"role": "importer", "qom_id": "tphimp",
                                  "bdf": "0000:04:00.0"}
    assert boot_session.load() == sess


def test_a_session_of_an_older_rig_still_loads(cache_home: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Session, "alive", lambda self: True)
    path = boot_session.state_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 1, "ssh_port": 2, "qmp_socket": "q", "console_log": "c",
                                "client_key": "k", "host_key": "h", "accel": "kvm"}))
    sess = boot_session.load()
    assert sess.devices == () and sess.topology == "default"
    assert sess.device("importer") == ("/machine/peripheral/tphimp", None)
    assert sess.device("tphexp") == ("/machine/peripheral/tphexp", None)


def test_session_of_a_booted_guest(tmp_path: Path) -> None:
    vm = vm_mod.VM(fake_arts(tmp_path), hint_cases.RP_NO_COMPLETER, tmp_path / "g", "tcg")
    vm.proc = SimpleNamespace(pid=777)  # type: ignore[assignment]
    sess = Session.of(vm, "tcg", DEVICES[:2])
    assert (sess.pid, sess.ssh_port, sess.topology) == (777, vm.ssh_port, "rp-no-completer")
    assert sess.qmp_socket == str(vm.qmp_path) and sess.client_key.endswith("client_key")
    assert sess.devices == tuple(DEVICES[:2])


@pytest.mark.parametrize(("name", "path", "role"), [
    ("exporter", "/machine/peripheral/tphexp", "exporter"),
    ("importer", "/machine/peripheral/tphimp", "importer"),
    ("spare", "/machine/peripheral/tphspare", "spare"),
    ("tphimp", "/machine/peripheral/tphimp", "importer"),
    ("/machine/peripheral/tphspare", "/machine/peripheral/tphspare", "spare"),
    ("/machine/peripheral/other", "/machine/peripheral/other", None),
])
def test_device_takes_a_role_a_qom_id_or_a_path(name: str, path: str, role: str | None) -> None:
    got, dev = _session().device(name)
    assert got == path
    assert (dev.role if dev else None) == role


def test_device_unknown_or_absent_is_an_error_naming_the_devices() -> None:
    with pytest.raises(RigError) as exc:
        _session().device("tphnope")
    assert "no tph-testdev 'tphnope'" in exc.value.message
    assert exc.value.fix is not None and "importer (tphimp, 0000:04:00.0)" in exc.value.fix
    with pytest.raises(RigError) as exc:
        _session(topology="rp-no-completer", devices=tuple(DEVICES[:2])).device("spare")
    assert "this guest (topology rp-no-completer) has no spare" in exc.value.message


# --- rig hints -----------------------------------------------------------------------------

REC: dict[str, object] = {"seq": 0, "generation": 1, "requester-id": 0x0400, "offset": 0,
                          "length": 128, "th": True, "ph": 1, "st": 0xBEEF, "ext": True}


class FakeMonitor:
    """x-query-tph-hints answers in turn; then KeyboardInterrupt (Ctrl-C)."""

    def __init__(self, answers: list[dict[str, Any]], calls: list[dict[str, Any]]) -> None:
        self.answers, self.calls = answers, calls

    def cmd(self, name: str, **args: Any) -> dict[str, Any]:
        assert name == "x-query-tph-hints"
        self.calls.append(args)
        if not self.answers:
            raise KeyboardInterrupt
        return self.answers.pop(0)

    def close(self) -> None:
        pass


@pytest.fixture
def hints_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[
        tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """`rig hints` on a fake session; (QMP answers to give, QMP calls made)."""
    answers: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    monitor = FakeMonitor(answers, calls)
    monkeypatch.setattr(boot_session, "load", lambda: _session())
    monkeypatch.setattr(Session, "qmp", lambda self, timeout=10.0: monitor)
    monkeypatch.setattr(Session, "alive", lambda self: True)
    sleeps: list[float] = []
    monkeypatch.setattr("rig.cli.guest.time.sleep", sleeps.append)
    yield answers, calls


def _answer(records: list[dict[str, Any]], total: int, dropped: int = 0) -> dict[str, Any]:
    return {"records": records, "total": total, "dropped": dropped}


def test_hints_names_the_device_and_the_requesters_role(
        hints_session: tuple[list[dict[str, Any]], list[dict[str, Any]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    answers, calls = hints_session
    answers.append(_answer([REC], 1))
    rc, out, _ = run_rig(capsys, "hints")
    assert rc == 0
    assert calls == [{"path": "/machine/peripheral/tphexp", "since": 0}]
    lines = out.splitlines()
    assert lines[0] == "hints received by exporter tphexp (0000:03:00.0)"
    # REC has no "direction", as from a QEMU before reads were recorded: a write
    assert lines[2].split() == ["0", "1", "04:00.0", "importer", "0x0", "128", "write",
                                "TH=1", "PH=1", "ST=0xbeef", "ext"]
    assert lines[3] == "total 1, dropped 0"


def test_hints_shows_reads_and_malformed_records(
        hints_session: tuple[list[dict[str, Any]], list[dict[str, Any]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    answers, _ = hints_session
    answers.append(_answer([{**REC, "direction": "write", "malformed": False},
                            {**REC, "seq": 1, "direction": "read", "malformed": True}], 2))
    rc, out, _ = run_rig(capsys, "hints")
    assert rc == 0
    lines = out.splitlines()
    assert lines[2].split()[6:] == ["write", "TH=1", "PH=1", "ST=0xbeef", "ext"]
    assert lines[3].split()[6:] == ["read", "TH=1", "PH=1", "ST=0xbeef", "ext", "MALFORMED"]


def test_the_readme_shows_what_rig_hints_prints() -> None:
    readme = (REPO / "README.md").read_text()
    sess = _session(devices=(DEVICES[0], DEVICES[1]))
    shown = "\n".join(["$ rig hints", "hints received by exporter tphexp (0000:03:00.0)",
                       cli_guest.HINTS_HEADER, cli_guest._fmt_record(REC, sess),
                       "total 1, dropped 0"])
    assert shown in readme
    assert "".join(f"  {d.role + ':':<9} {d.bdf}  QOM" for d in DEVICES[:1]) in readme


def test_hints_device_role_since_and_json(
        hints_session: tuple[list[dict[str, Any]], list[dict[str, Any]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    answers, calls = hints_session
    reply = _answer([{**REC, "seq": 5}], 6)
    answers.append(reply)
    rc, out, _ = run_rig(capsys, "hints", "--device", "importer", "--since", "5", "--json")
    assert rc == 0
    assert calls == [{"path": "/machine/peripheral/tphimp", "since": 5}]
    assert json.loads(out) == reply


def test_hints_unknown_device_is_refused_before_qmp(
        hints_session: tuple[list[dict[str, Any]], list[dict[str, Any]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    _, calls = hints_session
    rc, _, err = run_rig(capsys, "hints", "--device", "nope")
    assert rc != 0 and "--device nope" in err and calls == []


def test_hints_follow_prints_each_record_once_until_ctrl_c(
        hints_session: tuple[list[dict[str, Any]], list[dict[str, Any]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    answers, calls = hints_session
    answers += [_answer([REC], 1), _answer([], 1), _answer([{**REC, "seq": 1, "ph": 2}], 2)]
    rc, out, _ = run_rig(capsys, "hints", "--follow", "--json", "--interval", "0.1")
    assert rc == 0                       # Ctrl-C ends it
    assert [c["since"] for c in calls] == [0, 1, 1, 2]
    assert [json.loads(ln)["seq"] for ln in out.splitlines()] == [0, 1]


def test_hints_follow_starts_again_when_the_log_is_cleared(
        hints_session: tuple[list[dict[str, Any]], list[dict[str, Any]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    answers, calls = hints_session
    answers += [_answer([REC, {**REC, "seq": 1}], 2), _answer([], 0), _answer([REC], 1)]
    rc, out, err = run_rig(capsys, "hints", "--follow")
    assert rc == 0 and [c["since"] for c in calls] == [0, 2, 0, 1]
    assert "(the hint log was cleared)" in err
    assert len([ln for ln in out.splitlines() if "TH=1" in ln]) == 3


@pytest.mark.parametrize("interval", ["0", "0.01", "11"])
def test_hints_follow_interval_is_bounded(
        interval: str, hints_session: tuple[list[dict[str, Any]], list[dict[str, Any]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_rig(capsys, "hints", "--follow", "--interval", interval)
    assert rc != 0 and f"--interval {float(interval)}" in err


def test_hints_follow_ends_when_the_guest_stops(
        hints_session: tuple[list[dict[str, Any]], list[dict[str, Any]]],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    answers, _ = hints_session
    answers.append(_answer([REC], 1))
    state = {"up": True}

    def query(sess: Session, path: str, since: int) -> dict[str, Any]:
        if answers:
            return answers.pop(0)
        state["up"] = False
        raise RigError("QEMU is gone")

    monkeypatch.setattr("rig.cli.guest._query_hints", query)
    monkeypatch.setattr(Session, "alive", lambda self: state["up"])
    rc, out, err = run_rig(capsys, "hints", "--follow")
    assert rc == 0 and "TH=1" in out and "the guest (pid 4242) stopped" in err


# --- rig run --keep-guest ------------------------------------------------------------------

def _keep_run(lab: FakeLab, cases: list[FakeCase], tmp_path: Path,
              interrupt: bool = False) -> tuple[runner.Keeper, Any]:
    keeper = runner.Keeper()
    rundir = tmp_path / "run"
    rundir.mkdir(exist_ok=True)
    run = runner.run_matrix(cases, fake_arts(tmp_path), TCG, rundir,
                            opts=runner.Options(jobs=1, vm_factory=lab.factory, keeper=keeper))
    return keeper, run


def _guest(lab: FakeLab, topo: Topology) -> FakeGuest:
    return next(g for g in lab.guests if g.topo == topo)


def test_keep_guest_keeps_the_first_failing_topologys_guest_only(tmp_path: Path) -> None:
    lab = FakeLab()
    cases = [FakeCase("a1", A), FakeCase("b1", B, verify=mismatch), FakeCase("b2", B),
             FakeCase("c1", C, verify=mismatch)]
    keeper, run = _keep_run(lab, cases, tmp_path)
    # The report is what it would be without --keep-guest.
    assert [o.status for o in run.outcomes] == [Status.PASS, Status.FAIL, Status.PASS,
                                                Status.FAIL]
    kept = keeper.kept
    assert kept is not None and kept.topo == B and kept.failed == ("b1",)
    assert kept.vm is _guest(lab, B) and kept.bench == Benches(
        {B.name: Bench("0000:00:03.0", "0000:00:04.0")})
    assert kept.vm.alive() and not _guest(lab, B).stopped.is_set()
    assert _guest(lab, A).stopped.is_set() and _guest(lab, C).stopped.is_set()
    assert keeper.stopped == ["gamma"]
    assert "beta: guest left running for inspection" in (tmp_path / "run/run.log").read_text()


def test_keep_guest_keeps_nothing_when_all_pass_or_the_guest_died(tmp_path: Path) -> None:
    lab = FakeLab()
    keeper, _ = _keep_run(lab, [FakeCase("a1", A), FakeCase("b1", B)], tmp_path)
    assert keeper.kept is None and keeper.stopped == []
    assert all(g.stopped.is_set() for g in lab.guests)
    lab = FakeLab(fate={"a2": "kill"})
    keeper, run = _keep_run(lab, [FakeCase("a1", A, verify=mismatch), FakeCase("a2", A)],
                            tmp_path)
    assert [o.status for o in run.outcomes] == [Status.FAIL, Status.CRASHED]
    assert keeper.kept is None and keeper.stopped == ["alpha"]


def test_keep_guest_keeps_nothing_once_the_run_is_halting(tmp_path: Path) -> None:
    ctl = control.Control(runlog.RunLog(tmp_path / "run.log"))
    lab = FakeLab()
    guest = ctl.track(lab.factory)(fake_arts(tmp_path), A, tmp_path / "g", "tcg")
    ctl.halt("the run was interrupted")
    assert not ctl.untrack(guest)
    keeper = runner.Keeper()
    assert not keeper.offer(runner.Kept(guest, A, Benches({A.name: BENCH}), TCG, ("a1",)), ctl)
    assert keeper.kept is None


class KeepableGuest(FakeGuest):
    """A fake guest with what a session needs (pid, SSH port, QMP socket, keys)."""

    def __init__(self, lab: FakeLab, topo: Topology, rundir: Path, accel: str) -> None:
        super().__init__(lab, topo, rundir, accel, fake_arts(rundir))
        self.proc = KeepableProc()
        self.ssh_port = 40123
        self.qmp_path = rundir / "qmp.sock"
        self.closed = False

    def start(self, timeout: float = 120.0,
              on_stage: Callable[[str, float], None] | None = None) -> None:
        super().start(timeout, on_stage)
        guest = self

        class Closable(FakeShell):
            def close(self) -> None:
                guest.closed = True

        self.shell = Closable(self)


class KeepableProc(FakeProc):
    pid = 31337


class KeepableLab(FakeLab):
    def factory(self, arts: Artifacts, topo: Topology, rundir: Path,
                accel: str) -> FakeGuest:
        g = KeepableGuest(self, topo, rundir, accel)
        self.guests.append(g)
        return g


@pytest.fixture
def keep_rig(monkeypatch: pytest.MonkeyPatch, cache_home: Path,
             tmp_path: Path) -> Iterator[tuple[KeepableLab, list[FakeCase]]]:
    """`rig run` with the builds faked and guests a session can be made of."""
    arts = fake_arts(tmp_path)
    built = SimpleNamespace(guest=lambda: arts, sources=lambda: {})
    lab = KeepableLab()
    cases = [FakeCase("a1", A), FakeCase("b1", B, verify=mismatch)]
    monkeypatch.setattr(artifacts, "build", lambda request, progress: built)
    monkeypatch.setattr(vm_mod, "require_device", lambda qemu: None)
    monkeypatch.setattr(bringup, "VM", lab.factory)
    monkeypatch.setattr(matrix, "full", lambda: cases)
    yield lab, cases


def test_rig_run_keep_guest_saves_the_kept_guest_as_the_boot_session(
        keep_rig: tuple[KeepableLab, list[FakeCase]],
        capsys: pytest.CaptureFixture[str]) -> None:
    lab, _ = keep_rig
    rc, out, err = run_rig(capsys, "run", "--accel", "tcg", "--keep-guest")
    assert rc == 1, out + err
    kept = _guest(lab, B)
    assert isinstance(kept, KeepableGuest)
    assert not kept.stopped.is_set() and kept.closed and kept.shell is None
    assert _guest(lab, A).stopped.is_set()
    data = json.loads(boot_session.state_path().read_text())
    assert (data["pid"], data["ssh_port"], data["topology"]) == (31337, 40123, "beta")
    assert data["qmp_socket"] == str(kept.qmp_path)
    assert [d["role"] for d in data["devices"]] == ["exporter", "importer"]
    assert "--keep-guest: the guest of topology beta is still running (b1 failed)" in err
    assert "rig ssh" in err and "rig stop" in err and "exporter: 0000:00:03.0" in err


def test_rig_run_keep_guest_says_when_nothing_was_kept(
        keep_rig: tuple[KeepableLab, list[FakeCase]],
        capsys: pytest.CaptureFixture[str]) -> None:
    _, cases = keep_rig
    cases[1] = FakeCase("b1", B)
    rc, _, err = run_rig(capsys, "run", "--accel", "tcg", "--keep-guest")
    assert rc == 0 and "--keep-guest: no guest kept (no scenario failed)" in err
    assert not boot_session.state_path().exists()


def test_rig_run_keep_guest_refuses_while_a_guest_runs(
        keep_rig: tuple[KeepableLab, list[FakeCase]], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab, _ = keep_rig
    monkeypatch.setattr(boot_session, "load", lambda: _session())
    js = tmp_path / "r.json"
    rc, _, err = run_rig(capsys, "run", "--accel", "tcg", "--keep-guest", "--json", str(js))
    assert rc == 2 and "a guest is already running (pid 4242" in err and "rig stop" in err
    assert lab.guests == []
    assert {s["status"] for s in json.loads(js.read_text())["scenarios"]} == {"NOT_RUN"}


def test_rig_boot_topology_prints_the_roles_and_saves_them(
        keep_rig: tuple[KeepableLab, list[FakeCase]],
        capsys: pytest.CaptureFixture[str]) -> None:
    lab, _ = keep_rig
    rc, out, err = run_rig(capsys, "boot", "--accel", "tcg", "--topology", "beta")   # keep_rig's
    assert rc == 0, err
    (guest,) = lab.guests
    assert guest.topo == B and not guest.stopped.is_set()
    assert out.startswith("guest up in 0.25s (topology beta; tcg; ")
    assert "  exporter: 0000:00:03.0  QOM tphexp (/machine/peripheral/tphexp)\n" in out
    assert "  importer: 0000:00:04.0  QOM tphimp (/machine/peripheral/tphimp)\n" in out
    assert "spare" not in out.split("ssh:")[0]
    data = json.loads(boot_session.state_path().read_text())
    assert data["topology"] == "beta"
    assert [(d["role"], d["bdf"]) for d in data["devices"]] == [
        ("exporter", "0000:00:03.0"), ("importer", "0000:00:04.0")]


def test_rig_boot_refuses_while_a_guest_runs(keep_rig: tuple[KeepableLab, list[FakeCase]],
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    lab, _ = keep_rig
    monkeypatch.setattr(boot_session, "load", lambda: _session())
    rc, _, err = run_rig(capsys, "boot", "--accel", "tcg")
    assert rc == 2 and "rig boot: a guest is already running (pid 4242, topology default)" in err
    assert lab.guests == []


# --- tphctl --help and roles ---------------------------------------------------------------

def _header_steps(src: str) -> list[str]:
    """The step list of tphctl.c's header comment, as lines without " * "."""
    header = src[:src.index(" */\n")]
    body = header[header.index(" * Steps"):].splitlines()[1:]
    body = body[:body.index(" *")] if " *" in body else body      # up to its blank line
    return [ln[3:] if ln.startswith(" * ") else ln[2:] for ln in body]


def _usage(src: str) -> str:
    """usage[]'s text, its C string literals joined."""
    block = src[src.index("static const char usage[] ="):]
    block = block[:block.index(";\n")]
    text = "".join(re.findall(r'^\s*"((?:[^"\\]|\\.)*)"', block, re.M))
    return text.encode().decode("unicode_escape")


def _steps_of(lines: list[str]) -> list[str]:
    return [ln.split()[0] for ln in lines if re.match(r"^  [a-z]", ln)]


def test_tphctl_help_lists_the_headers_steps_and_main_runs_each() -> None:
    src = TPHCTL.read_text()
    usage = _usage(src)
    listed = usage.split("Steps:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert listed == _header_steps(src), "keep usage[] the same as the header's step list"
    main = src[src.index("\nint main("):]
    dispatched = re.findall(r'if \(!strcmp\(s, "([a-z-]+)"\)\)', main)
    assert sorted(_steps_of(listed)) == sorted(dispatched)
    readme = (REPO / "README.md").read_text()
    example = usage.rstrip("\n").splitlines()[-1].strip()
    assert example.startswith("tphctl open exporter ")
    assert f"rig ssh '{example}'" in readme


def _kernel_headers() -> Path:
    """The uAPI headers of the kernel under test (with the series' TPH uAPI),
    built by the rig (a cache hit after the first build)."""
    res = subprocess.run([sys.executable, "-m", "rig", "build", "kernel", "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=5400, check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    return Path(json.loads(res.stdout)["components"]["kernel"]["artifacts"]["headers"]) / "include"


@pytest.fixture(scope="module")
def tphctl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tphctl built as the image build builds it, against the kernel's headers."""
    headers = _kernel_headers()
    assert "VFIO_DEVICE_FEATURE_DMA_BUF_TPH" in (headers / "linux/vfio.h").read_text()
    out = tmp_path_factory.mktemp("tphctl") / "tphctl"
    res = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread",
                          f"-I{headers}", f"-I{REPO / 'importer/include/uapi'}", "-o", str(out),
                          str(TPHCTL)], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    return out


@pytest.mark.integration
def test_tphctl_help_prints_the_steps_and_an_example(tphctl: Path) -> None:
    for flag in ("--help", "-h"):
        res = subprocess.run([tphctl, flag], capture_output=True, text=True, timeout=10,
                             check=False)
        assert res.returncode == 0 and res.stderr == ""
        assert res.stdout == _usage(TPHCTL.read_text())
        assert "  open BDF|ROLE " in res.stdout and "  sleep MS" in res.stdout
        assert "tphctl open exporter get set 2 0 0xbeef 1 attach dma 0 128 " in res.stdout
    res = subprocess.run([tphctl], capture_output=True, text=True, timeout=10, check=False)
    assert res.returncode == 22 and res.stderr.startswith("usage: tphctl")


def _open(tphctl: Path, name: str, devices: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tphctl, "open", name], capture_output=True, text=True, timeout=10,
                          check=False, env={**os.environ, "TPHLAB_DEVICES": str(devices)})


@pytest.mark.integration
def test_tphctl_takes_a_role_through_the_role_file(tphctl: Path, tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    devices.write_text(topology.devices_text(DEVICES))
    for name, bdf in (("exporter", "0000:03:00.0"), ("tphspare", "0000:05:00.0"),
                      ("0000:09:00.0", "0000:09:00.0")):
        res = _open(tphctl, name, devices)
        # No such device on this host: the open fails, on the BDF the role names.
        assert json.loads(res.stdout.splitlines()[0])["bdf"] == bdf, res.stderr
    res = _open(tphctl, "spare", tmp_path / "missing")
    assert res.returncode == 2 and res.stdout == ""
    assert f"{tmp_path / 'missing'}" in res.stderr and "cannot be read" in res.stderr
    devices.write_text(topology.devices_text(DEVICES[:2]))
    res = _open(tphctl, "spare", devices)
    assert res.returncode == 19
    assert res.stderr == f'tphctl: no device "spare" in {devices} (it names: exporter importer)\n'
