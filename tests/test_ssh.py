"""GuestShell.run: the timeout is a wall-clock limit on the whole command (fake channels)."""

from __future__ import annotations

import logging
import time
from typing import cast

import paramiko
import pytest

from rig.errors import GuestError
from rig.guest.ssh import GuestShell


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


def shell_on(chan: FakeChannel) -> GuestShell:
    shell = GuestShell.__new__(GuestShell)   # no keys needed: the client is fake
    shell.host, shell.port = "127.0.0.1", 2222
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
