"""GuestShell.run: the timeout is a wall-clock limit on the whole command (fake channels)."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from typing import Any, cast

import paramiko
import pytest

from rig.errors import GuestError
from rig.guest.ssh import CmdResult, GuestShell


class FakeChannel:
    """A paramiko.Channel as collect() uses it: `chunks` of stdout (None: nothing
    comes within the recv timeout), then EOF and `rc`; endless: output forever."""

    def __init__(self, chunks: list[bytes | None], rc: int = 0, stderr: bytes = b"",
                 endless: bool = False) -> None:
        self.chunks = list(chunks)
        self.rc = rc
        self.stderr = stderr
        self.endless = endless
        self.timeout: float | None = None
        self.command = ""
        self.closed = False

    def exec_command(self, command: str) -> None:
        self.command = command

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def recv(self, nbytes: int) -> bytes:
        if self.endless:
            time.sleep(0.001)
            return b"more output\n"
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if chunk is None:
            time.sleep(self.timeout or 0)
            raise TimeoutError
        return chunk

    def recv_stderr_ready(self) -> bool:
        return bool(self.stderr)

    def recv_stderr(self, nbytes: int) -> bytes:
        out, self.stderr = self.stderr[:nbytes], self.stderr[nbytes:]
        return out

    def exit_status_ready(self) -> bool:
        return not self.endless and not self.chunks

    def recv_exit_status(self) -> int:
        return self.rc

    def close(self) -> None:
        self.closed = True


class FakeTransport:
    def __init__(self, chan: FakeChannel) -> None:
        self.chan = chan

    def is_active(self) -> bool:
        return True

    def open_session(self, timeout: float | None = None) -> FakeChannel:
        return self.chan


class FakeClient:
    def __init__(self, chan: FakeChannel) -> None:
        self.transport = FakeTransport(chan)

    def get_transport(self) -> FakeTransport:
        return self.transport

    def close(self) -> None:
        pass


def shell_on(chan: Any, persistent: bool = False) -> GuestShell:
    shell = GuestShell.__new__(GuestShell)   # no keys needed: the client is fake
    shell.host, shell.port = "127.0.0.1", 2222
    shell.persistent, shell._session, shell._lock = persistent, None, threading.Lock()
    shell.client = cast(paramiko.SSHClient, FakeClient(chan))
    return shell


def test_output_that_keeps_coming_is_cut_at_the_deadline() -> None:
    chan = FakeChannel([], endless=True)
    started = time.monotonic()
    with pytest.raises(GuestError, match=r"did not finish in 0.5 s \(its SSH channel was closed"):
        shell_on(chan).run("yes", timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert chan.closed


def test_a_silent_command_is_cut_at_the_deadline() -> None:
    chan = FakeChannel([None] * 1000)
    started = time.monotonic()
    with pytest.raises(GuestError, match="did not finish"):
        shell_on(chan).run("sleep 100", timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert chan.closed and chan.timeout is not None and chan.timeout <= 0.3


def test_output_stderr_and_exit_code(caplog: pytest.LogCaptureFixture) -> None:
    chan = FakeChannel([b"one\n{\"step\": \"de", None, b"tach\"}\nlast, no newline"],
                       rc=3, stderr=b"warning\n")
    with caplog.at_level(logging.DEBUG, logger="rig.guest.ssh"):
        res = shell_on(chan).run("tphctl x", timeout=10)
    assert res.rc == 3 and res.stderr == "warning\n"
    assert res.stdout == 'one\n{"step": "detach"}\nlast, no newline\n'
    assert chan.command == "tphctl x"
    assert chan.closed
    logged = [r.getMessage() for r in caplog.records]
    assert "ssh 127.0.0.1:2222 $ tphctl x" in logged
    sizes = f"stdout {len(res.stdout)} characters, stderr 8"
    assert any(m.startswith("ssh: exit 3 after") and sizes in m for m in logged), logged


def test_a_lost_connection_is_a_guest_error() -> None:
    shell = shell_on(FakeChannel([]))
    shell.client = None
    with pytest.raises(GuestError, match="not connected"):
        shell.run("true")


# --- the persistent shell: the commands of one guest in one `sh` --------------------------

class LocalShellChannel:
    """A session channel whose `exec sh` is a real local sh: what ShellSession
    sends runs for real. Each exec_command is a new sh (a new channel)."""

    def __init__(self) -> None:
        self.execs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.closed = False
        self.eof_received = 0
        self._buf = {"out": bytearray(), "err": bytearray()}
        self._lock = threading.Lock()
        self._r, self._w = os.pipe()

    def exec_command(self, command: str) -> None:
        assert command == "exec sh"
        self.execs += 1
        self.proc = subprocess.Popen(["sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._pump, args=(name, stream), daemon=True).start()

    def _pump(self, name: str, stream: Any) -> None:
        while data := os.read(stream.fileno(), 4096):
            with self._lock:
                self._buf[name] += data
            os.write(self._w, b"x")
        if name == "out":
            self.eof_received = 1
            os.write(self._w, b"x")

    def sendall(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def fileno(self) -> int:
        return self._r

    def _take(self, name: str, nbytes: int) -> bytes:
        with self._lock:
            buf = self._buf[name]
            out = bytes(buf[:nbytes])
            del buf[:nbytes]
        return out

    def recv_ready(self) -> bool:
        return bool(self._buf["out"])

    def recv(self, nbytes: int) -> bytes:
        os.read(self._r, 4096) if self.recv_ready() else None
        return self._take("out", nbytes)

    def recv_stderr_ready(self) -> bool:
        return bool(self._buf["err"])

    def recv_stderr(self, nbytes: int) -> bytes:
        return self._take("err", nbytes)

    def settimeout(self, timeout: float | None) -> None:
        pass

    def exit_status_ready(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def recv_exit_status(self) -> int:
        assert self.proc is not None
        return self.proc.wait()

    def close(self) -> None:
        self.closed = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ChannelMaker:
    """FakeClient's channel: a new LocalShellChannel per open_session."""

    def __init__(self) -> None:
        self.made: list[LocalShellChannel] = []

    def open(self) -> LocalShellChannel:
        self.made.append(LocalShellChannel())
        return self.made[-1]


def persistent_shell() -> tuple[GuestShell, ChannelMaker]:
    maker = ChannelMaker()
    shell = shell_on(None, persistent=True)
    transport = cast(Any, shell.client).transport
    transport.open_session = lambda timeout=None: maker.open()
    return shell, maker


def test_one_shell_runs_every_command_with_its_own_output_and_status() -> None:
    shell, maker = persistent_shell()
    try:
        assert shell.run("echo one; echo err >&2; exit 3") == CmdResult(3, "one\n", "err\n")
        assert shell.run("printf 'no newline'") == CmdResult(0, "no newline", "")
        assert shell.run("true") == CmdResult(0, "", "")
        assert shell.run("printf 'a\\n\\n'") == CmdResult(0, "a\n\n", "")
        # A command that reads stdin gets nothing (not the commands that follow).
        assert shell.run("cat; echo after") == CmdResult(0, "after\n", "")
        # Its own state stays its own: a subshell each.
        shell.run("cd /; X=1")
        assert shell.run('pwd; echo "x=$X"').stdout == f"{os.getcwd()}\nx=\n"
        # A line that looks like another command's end is just output.
        fake = "tphlab-end-0000000000000000-9 0"
        assert shell.run(f"echo; echo '{fake}'").stdout == f"\n{fake}\n"
        assert len(maker.made) == 1 and maker.made[0].execs == 1
    finally:
        shell.close()


def test_a_command_past_its_deadline_closes_the_shell_and_the_next_gets_a_new_one() -> None:
    shell, maker = persistent_shell()
    try:
        assert shell.run("echo first").stdout == "first\n"
        started = time.monotonic()
        with pytest.raises(GuestError, match=r"did not finish in 0.3 s"):
            shell.run("sleep 5", timeout=0.3)
        assert time.monotonic() - started < 1.5
        assert maker.made[0].closed
        assert shell.run("echo again") == CmdResult(0, "again\n", "")
        assert len(maker.made) == 2
    finally:
        shell.close()


def test_a_shell_that_dies_is_a_guest_error_and_the_next_command_starts_another() -> None:
    shell, maker = persistent_shell()
    try:
        with pytest.raises(GuestError, match="failed over SSH: the guest's shell ended"):
            shell.run("kill -9 $$; sleep 5", timeout=5)
        assert shell.run("echo back").stdout == "back\n"
        assert len(maker.made) == 2
    finally:
        shell.close()
