"""Child processes end within their bounds: proc.run/capture kill the whole process
group on a timeout, QemuProcess quits, TERMs, KILLs and reaps, VM.stop without QMP
does not wait (fake processes, no QEMU)."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig import proc
from rig.builder.artifacts import Artifacts
from rig.errors import BuildError, GuestError, RigError, SourceError
from rig.guest import topology
from rig.guest.qemu import QemuError, QemuProcess
from rig.guest.ssh import CmdResult
from rig.guest.vm import VM


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its (re)parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _wait_gone(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while not all(_gone(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_for(path: Path, text: str, within: float = 10.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text()):
            return content
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


# proc.run and proc.capture

BOTH_SLEEP = "sleep 100 & echo child $!; echo shell $$; sleep 100"


def test_run_timeout_kills_the_whole_group_and_raises_the_stage_error(tmp_path: Path) -> None:
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(SourceError) as exc:
        proc.run(["sh", "-c", BOTH_SLEEP], log=tmp_path / "log", on_line=lines.append,
                 timeout=1.0, error=SourceError, what="the fetch")
    assert time.monotonic() - started < 5
    assert "the fetch timed out after 1 s" in exc.value.message
    assert exc.value.fix and exc.value.log == str(tmp_path / "log")
    pids = [int(ln.split()[1]) for ln in lines]
    assert len(pids) == 2 and _wait_gone(pids), "a process of the group outlived the timeout"


def test_run_a_leftover_child_holding_the_pipe_is_killed_at_the_timeout(tmp_path: Path) -> None:
    """make's or ninja's children keep stdout open after the command itself exits."""
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(BuildError, match="timed out"):
        proc.run(["sh", "-c", "sleep 100 & echo child $!"], log=tmp_path / "log",
                 on_line=lines.append, timeout=1.0)
    assert time.monotonic() - started < 5
    assert _wait_gone([int(lines[0].split()[1])])


def test_run_interrupted_by_its_callback_kills_the_group(tmp_path: Path) -> None:
    seen: list[str] = []

    def hook(line: str) -> None:
        seen.append(line)
        if line.startswith("shell"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        proc.run(["sh", "-c", BOTH_SLEEP], log=tmp_path / "log", on_line=hook, timeout=60)
    assert _wait_gone([int(ln.split()[1]) for ln in seen])


def test_run_still_reports_failures_and_output(tmp_path: Path) -> None:
    proc.run(["sh", "-c", "echo fine"], log=tmp_path / "log", timeout=10)
    with pytest.raises(BuildError, match=r"exit 3\); last lines:\n    \| oops"):
        proc.run(["sh", "-c", "echo oops; exit 3"], log=tmp_path / "log", timeout=10)
    assert "fine" in (tmp_path / "log").read_text()


def test_capture_timeout_kills_the_group_and_raises_a_rig_error() -> None:
    started = time.monotonic()
    with pytest.raises(RigError) as exc:
        proc.capture(["sh", "-c", "sleep 100 & sleep 100"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert "timed out after" in exc.value.message and exc.value.fix
    assert proc.capture(["sh", "-c", "echo hi"]) == "hi\n"


def test_run_captured_a_background_child_holding_stdout_is_bounded() -> None:
    started = time.monotonic()
    with pytest.raises(BuildError, match="timed out"):
        proc.run_captured(["sh", "-c", "sleep 100 &"], timeout=0.5, error=BuildError)
    assert time.monotonic() - started < 5
    res = proc.run_captured(["sh", "-c", "cat; echo err >&2; exit 4"], timeout=10,
                            input="in\n", env={"X": "1"})
    assert (res.returncode, res.stdout, res.stderr) == (4, "in\n", "err\n")


# QemuProcess

IGNORE_TERM = ("trap '' TERM; sleep 100 & echo child $!; echo ready; "
               "while :; do sleep 0.1; done")


def test_stop_kills_a_process_ignoring_sigterm_within_the_bound(tmp_path: Path) -> None:
    log = tmp_path / "qemu.log"
    qemu = QemuProcess.spawn(["sh", "-c", IGNORE_TERM], log)
    child = int(_wait_for(log, "ready").split()[1])
    started = time.monotonic()
    rc = qemu.stop(quit_timeout=5, term_timeout=0.5, kill_timeout=5)
    assert time.monotonic() - started < 3
    assert rc == -9 and not qemu.alive()
    assert _wait_gone([child]), "SIGKILL did not reach the whole process group"


def test_stop_without_qmp_sends_sigterm_at_once(tmp_path: Path) -> None:
    qemu = QemuProcess.spawn(["sleep", "100"], tmp_path / "qemu.log")
    started = time.monotonic()
    assert qemu.stop(quit_timeout=60, term_timeout=60, kill_timeout=60) == -15
    assert time.monotonic() - started < 2


def test_spawned_qemu_leads_its_own_process_group(tmp_path: Path) -> None:
    qemu = QemuProcess.spawn(["sleep", "100"], tmp_path / "qemu.log")
    try:
        assert os.getpgid(qemu.pid) == qemu.pid != os.getpgid(0)
    finally:
        qemu.stop()


def test_spawn_of_a_missing_binary_is_a_rig_error(tmp_path: Path) -> None:
    with pytest.raises(RigError, match="does not exist"):
        QemuProcess.spawn([str(tmp_path / "no-qemu")], tmp_path / "qemu.log")


def test_attach_sees_a_reused_pid_as_gone(tmp_path: Path) -> None:
    qemu = QemuProcess.spawn(["sleep", "100"], tmp_path / "qemu.log")
    try:
        assert QemuProcess.attach(qemu.pid, expect="sleep").alive()
        assert not QemuProcess.attach(qemu.pid, expect="/run/qmp.sock").alive()
    finally:
        qemu.stop()
    assert not QemuProcess.attach(qemu.pid).alive()


def test_connect_qmp_gives_up_at_the_deadline_without_a_socket(tmp_path: Path) -> None:
    qemu = QemuProcess.spawn(["sleep", "100"], tmp_path / "qemu.log")
    try:
        started = time.monotonic()
        with pytest.raises(QemuError, match="did not answer in"):
            qemu.connect_qmp(tmp_path / "qmp.sock", timeout=0.5)
        assert time.monotonic() - started < 2
    finally:
        qemu.stop()


def test_connect_qmp_gives_up_when_qemu_exits(tmp_path: Path) -> None:
    qemu = QemuProcess.spawn(["sh", "-c", "sleep 0.2"], tmp_path / "qemu.log")
    started = time.monotonic()
    with pytest.raises(QemuError, match="exited before its QMP socket"):
        qemu.connect_qmp(tmp_path / "qmp.sock", timeout=30)
    assert time.monotonic() - started < 5


@pytest.fixture
def silent_server(tmp_path: Path) -> Iterator[Path]:
    """A unix socket that accepts connections and never sends a QMP greeting."""
    path = tmp_path / "qmp.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield path
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def test_connect_qmp_to_a_silent_socket_is_bounded(tmp_path: Path, silent_server: Path) -> None:
    qemu = QemuProcess.spawn(["sleep", "100"], tmp_path / "qemu.log")
    try:
        started = time.monotonic()
        with pytest.raises(QemuError, match="sent no greeting"):
            qemu.connect_qmp(silent_server, timeout=0.5)
        assert time.monotonic() - started < 3
    finally:
        qemu.stop()


FAKE_QEMU = r"""
import json, socket, sys
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(1)
conn = srv.accept()[0]
def send(obj):
    conn.sendall(json.dumps(obj).encode() + b"\r\n")
send({"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 13}, "package": ""},
              "capabilities": []}})
buf, dec = "", json.JSONDecoder()
while data := conn.recv(4096):
    buf += data.decode()
    while buf.strip():
        msg, end = dec.raw_decode(buf.lstrip())
        buf = buf.lstrip()[end:]
        send({"return": {}, **({"id": msg["id"]} if "id" in msg else {})})
        if msg["execute"] == "quit":
            sys.exit(0)
"""


def test_stop_quits_over_qmp_and_the_traffic_is_in_the_debug_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sock = tmp_path / "qmp.sock"
    qemu = QemuProcess.spawn([sys.executable, "-c", FAKE_QEMU, str(sock)], tmp_path / "q.log")
    with caplog.at_level(logging.DEBUG):
        mon = qemu.connect_qmp(sock, timeout=10)
        assert qemu.connect_qmp(sock, timeout=10) is mon
        started = time.monotonic()
        assert qemu.stop(term_timeout=30) == 0, "QEMU was signalled instead of quitting"
        assert time.monotonic() - started < 5
    sent = [r.getMessage() for r in caplog.records if r.getMessage().startswith("-->")]
    assert any('"execute":"quit"' in m for m in sent), sent


# VM

@pytest.fixture
def vm(tmp_path: Path) -> VM:
    d = tmp_path / "arts"
    arts = Artifacts(d / "qemu-system-x86_64", d / "share/qboot.rom", d / "share",
                     d / "bzImage", d / "initramfs.cpio.gz", d / "client_key", d / "host_key")
    return VM(arts, topology.Topology(), tmp_path / "run", "tcg")


def test_vm_stop_without_qmp_does_not_wait(vm: VM) -> None:
    vm.proc = QemuProcess.spawn(["sleep", "100"], vm.qemu_log)
    pid = vm.proc.pid
    started = time.monotonic()
    vm.stop(timeout=10)
    assert time.monotonic() - started < 2
    assert vm.proc is None and not vm.alive() and _gone(pid)


def test_vm_boot_hang_ends_quickly_and_reaps_qemu(vm: VM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm, "argv", lambda: ["sleep", "100"])
    started = time.monotonic()
    with pytest.raises(GuestError, match="guest boot hung"):
        vm.start(timeout=0.5)
    assert time.monotonic() - started < 3, "stop waited for a QMP that never opened"
    assert vm.proc is None


class UnameShell:
    """A guest's shell that answers `uname -v` with a version string."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.asked: list[str] = []

    def run(self, command: str, timeout: float = 60.0) -> CmdResult:
        self.asked.append(command)
        return CmdResult(0, self.version + "\n", "")

    def close(self) -> None:
        pass


def test_a_guest_running_another_kernel_than_the_one_built_is_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bzImage holding an earlier build's kernel (a stale object reused):
    the guest's `uname -v` is not the version the build linked."""
    d = tmp_path / "arts"
    built = "#22 SMP PREEMPT Thu Dec  3 19:58:40 UTC 2026"
    arts = Artifacts(d / "qemu-system-x86_64", d / "share/qboot.rom", d / "share",
                     d / "bzImage", d / "initramfs.cpio.gz", d / "client_key", d / "host_key",
                     built)
    for said, ok in (("#21 SMP PREEMPT Thu Dec  3 19:42:32 UTC 2026", False), (built, True)):
        vm = VM(arts, topology.Topology(), tmp_path / f"run-{ok}", "tcg")
        monkeypatch.setattr(vm, "argv", lambda v=vm: [
            "sh", "-c", f"echo tphlab-ready > {v.console}; sleep 100"])
        shell = UnameShell(said)

        def connect(timeout: float, v: VM = vm, sh: UnameShell = shell) -> None:
            v.shell = sh  # type: ignore[assignment]

        monkeypatch.setattr(vm, "_connect_shell", connect)
        if ok:
            vm.start(timeout=10)
            assert shell.asked == ["uname -v"]
            vm.stop()
            continue
        with pytest.raises(BuildError) as exc:
            vm.start(timeout=10)
        assert "runs a kernel other than the one built" in exc.value.message
        assert f"it says {said!r}, the build linked {built!r}" in exc.value.message
        assert "meta.json" in (exc.value.fix or "") and exc.value.exit_code == 2
        assert vm.proc is None, "QEMU was left running"


def test_vm_qemu_exiting_during_boot_is_reported_with_its_status(
        vm: VM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm, "argv", lambda: ["sh", "-c", "echo bad option >&2; exit 1"])
    with pytest.raises(RigError, match=r"QEMU exited \(1\) during boot after stage qemu: "
                                       r"bad option"):
        vm.start(timeout=10)
    vm.stop()
