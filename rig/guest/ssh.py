"""SSH into the guest with paramiko: one connection reused for every command.

A command's timeout is a wall-clock limit on the whole command: at the
deadline its channel is closed and GuestError raised, however much output
keeps coming. Commands, exit codes and output sizes go to the debug log
(`rig -v`).
"""

from __future__ import annotations

import base64
import logging
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
                 host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
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
        fix = "the guest may have hung or panicked: see the console log"
        try:
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                raise paramiko.SSHException("the SSH connection is closed")
            chan: Channel = transport.open_session(timeout=max(0.1, deadline - started))
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            raise GuestError(f"guest command {command!r} failed over SSH: {exc or 'timeout'}",
                             fix=fix) from exc
        try:
            res = collect(chan, command, deadline)
        except _Deadline:
            log.debug("ssh: %r still running after %.1f s: channel closed", command, timeout)
            raise GuestError(f"guest command {command!r} did not finish in {timeout:g} s "
                             f"(its SSH channel was closed)", fix=fix) from None
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            raise GuestError(f"guest command {command!r} failed over SSH: {exc or 'timeout'}",
                             fix=fix) from exc
        finally:
            chan.close()
        log.debug("ssh: exit %d after %.2f s, stdout %d characters, stderr %d", res.rc,
                  time.monotonic() - started, len(res.stdout), len(res.stderr))
        return res

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class Channel(Protocol):
    """What collect() uses of a paramiko.Channel."""

    def exec_command(self, command: str) -> None: ...
    def settimeout(self, timeout: float | None) -> None: ...
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
