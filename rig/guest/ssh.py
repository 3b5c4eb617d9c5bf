"""SSH into the guest with paramiko: one connection reused for every command.

A command's timeout is a wall-clock limit on the whole command: at the
deadline its channel is closed and GuestError raised, however much output
keeps coming. Commands, exit codes and output sizes go to the debug log
(`rig -v`).

A shell made with `persistent=True` (the bench's guests) runs its commands
in one `sh` on one channel, one after another, each in a subshell of its
own with stdin from /dev/null: no channel to open and no shell to start per
command (about two thirds of a scenario's time under TCG). Each command's
end is a line with a mark the command cannot know (a random token and a
count) and its exit status, on stdout, and the mark on stderr. A command
that outlives its deadline has its channel closed, as with an exec, and
the next command starts a new shell.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import select
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import paramiko

from rig.errors import GuestError

log = logging.getLogger(__name__)

CHUNK = 32768
POLL = 0.05     # longest wait for output before the deadline is looked at again


@dataclass(frozen=True)
class CmdResult:
    rc: int
    stdout: str
    stderr: str


class GuestShell:
    def __init__(self, port: int, client_key: Path, host_key_pub: Path,
                 host: str = "127.0.0.1", persistent: bool = False) -> None:
        self.host = host
        self.port = port
        self.persistent = persistent
        self._session: ShellSession | None = None
        self._lock = threading.Lock()
        self.key = paramiko.Ed25519Key.from_private_key_file(str(client_key))
        kind, blob = host_key_pub.read_text().split()[:2]
        self.host_key = (paramiko.Ed25519Key(data=base64.b64decode(blob))
                         if kind == "ssh-ed25519" else None)
        self.client: paramiko.SSHClient | None = None

    def connect(self, timeout: float) -> None:
        """Connect, retrying until `timeout` (sshd may still be starting)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            client = paramiko.SSHClient()
            if self.host_key is not None:
                name = f"[{self.host}]:{self.port}"
                client.get_host_keys().add(name, self.host_key.get_name(), self.host_key)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                client.connect(self.host, self.port, username="root", pkey=self.key,
                               timeout=5, banner_timeout=5, auth_timeout=5,
                               look_for_keys=False, allow_agent=False)
                self.client = client
                return
            except (TimeoutError, OSError, paramiko.SSHException) as exc:
                last = exc
                client.close()
                time.sleep(0.1)
        raise GuestError(f"SSH to the guest on 127.0.0.1:{self.port} failed for "
                         f"{timeout:.0f} s: {last}",
                         fix="see the console log; is dropbear in the image and the "
                             "network up?")

    def run(self, command: str, timeout: float = 60.0) -> CmdResult:
        """Run a command, at most `timeout` s of wall-clock time in all.

        At the deadline the channel is closed and GuestError raised.
        """
        if self.client is None:
            raise GuestError("SSH is not connected")
        started = time.monotonic()
        deadline = started + timeout
        log.debug("ssh %s:%d $ %s", self.host, self.port, command)
        with self._lock:
            try:
                if self.persistent:
                    res = self._in_session(command, deadline)
                else:
                    chan = self._open(deadline)
                    try:
                        res = collect(chan, command, deadline)
                    finally:
                        chan.close()
            except _Deadline:
                log.debug("ssh: %r still running after %.1f s: channel closed", command,
                          timeout)
                raise GuestError(f"guest command {command!r} did not finish in {timeout:g} s "
                                 f"(its SSH channel was closed)", fix=FIX) from None
            except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
                raise GuestError(f"guest command {command!r} failed over SSH: "
                                 f"{exc or 'timeout'}", fix=FIX) from exc
        log.debug("ssh: exit %d after %.2f s, stdout %d characters, stderr %d", res.rc,
                  time.monotonic() - started, len(res.stdout), len(res.stderr))
        return res

    def _open(self, deadline: float) -> Channel:
        """A new session channel on the connection."""
        assert self.client is not None
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise paramiko.SSHException("the SSH connection is closed")
        chan: Channel = transport.open_session(timeout=max(0.1, deadline - time.monotonic()))
        return chan

    def _in_session(self, command: str, deadline: float) -> CmdResult:
        """`command` in the persistent shell (started on first use, and again
        after a command that broke or outlived the last one)."""
        if self._session is None:
            self._session = ShellSession(self._open(deadline))
        try:
            return self._session.run(command, deadline)
        except BaseException:
            self._session.close()
            self._session = None
            raise

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self.client is not None:
            self.client.close()
            self.client = None


FIX = "the guest may have hung or panicked: see the console log"


class ShellSession:
    """One `sh` on one channel, running commands one after another (see the
    module's docstring)."""

    def __init__(self, chan: Channel) -> None:
        self.chan = chan
        self.token = secrets.token_hex(8)
        self.count = 0
        chan.exec_command("exec sh")
        self._out = bytearray()
        self._err = bytearray()

    def run(self, command: str, deadline: float) -> CmdResult:
        self.count += 1
        mark = f"tphlab-end-{self.token}-{self.count}"
        # The newline before each mark puts it on a line of its own whatever the
        # command printed last; the command's own output is what comes before it.
        script = (f"(\n{command}\n) </dev/null; printf '\\n%s %d\\n' {mark} $?; "
                  f"printf '\\n%s\\n' {mark} >&2\n")
        self.chan.sendall(script.encode())
        out_end = re.compile(rb"\n" + mark.encode() + rb" (\d+)\n")
        err_end = b"\n" + mark.encode() + b"\n"
        while True:
            while self.chan.recv_ready():
                self._out += self.chan.recv(CHUNK)
            while self.chan.recv_stderr_ready():
                self._err += self.chan.recv_stderr(CHUNK)
            done_out = out_end.search(self._out)
            done_err = self._err.find(err_end)
            if done_out is not None and done_err >= 0:
                break
            if self.chan.eof_received or self.chan.closed or self.chan.exit_status_ready():
                raise EOFError("the guest's shell ended")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Deadline
            # The channel's fileno turns readable on stdout or stderr data.
            select.select([self.chan], [], [], min(POLL, remaining))
        rc = int(done_out.group(1))
        stdout = bytes(self._out[:done_out.start()])
        stderr = bytes(self._err[:done_err])
        del self._out[:done_out.end()]
        del self._err[:done_err + len(err_end)]
        return CmdResult(rc, _text(stdout), _text(stderr))

    def close(self) -> None:
        self.chan.close()


def _text(raw: bytes) -> str:
    return raw.decode(errors="replace")


class Channel(Protocol):
    """What collect() uses of a paramiko.Channel."""

    def exec_command(self, command: str) -> None: ...
    def sendall(self, s: bytes) -> None: ...
    def settimeout(self, timeout: float | None) -> None: ...
    def recv_ready(self) -> bool: ...
    def fileno(self) -> int: ...
    @property
    def eof_received(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def recv(self, nbytes: int) -> bytes: ...
    def recv_stderr_ready(self) -> bool: ...
    def recv_stderr(self, nbytes: int) -> bytes: ...
    def exit_status_ready(self) -> bool: ...
    def recv_exit_status(self) -> int: ...
    def close(self) -> None: ...


class _Deadline(Exception):
    """The command's wall-clock deadline passed."""


def collect(chan: Channel, command: str, deadline: float) -> CmdResult:
    """Run `command` on the open session `chan`, reading stdout and stderr until
    it exits; _Deadline once time.monotonic() passes `deadline`.

    No single wait is longer than POLL s, so output that keeps coming (or a
    guest that sends nothing) cannot hold it past the deadline.
    """
    chan.exec_command(command)
    lines: list[str] = []
    pending = b""
    err = bytearray()
    eof = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Deadline
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(CHUNK)
        if eof:
            # SSH's EOF covers stderr too: only the exit status is still to come.
            if chan.exit_status_ready():
                return CmdResult(chan.recv_exit_status(), "".join(lines),
                                 err.decode(errors="replace"))
            time.sleep(min(POLL, remaining))
            continue
        chan.settimeout(min(POLL, remaining))
        try:
            data = chan.recv(CHUNK)
        except TimeoutError:
            continue
        if not data:
            eof = True
            if pending:
                lines.append(pending.decode(errors="replace") + "\n")
            continue
        *full, pending = (pending + data).split(b"\n")
        for raw in full:
            line = raw.decode(errors="replace") + "\n"
            lines.append(line)
