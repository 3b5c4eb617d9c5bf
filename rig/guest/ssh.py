"""SSH into the guest with paramiko: one connection reused for every command."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from rig.errors import GuestError


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

    def run(self, command: str, timeout: float = 60.0,
            on_pause: Callable[[], None] | None = None,
            marker: str = '"step": "pause"') -> CmdResult:
        """Run a command; with on_pause, answer each marker line on stdin after calling it.

        on_pause runs while the guest side waits (e.g. to read QEMU's view
        of the devices before the command releases them).
        """
        if self.client is None:
            raise GuestError("SSH is not connected")
        out_lines: list[str] = []
        try:
            stdin, out, err = self.client.exec_command(command, timeout=timeout)
            for line in out:
                out_lines.append(line if line.endswith("\n") else line + "\n")
                if on_pause is not None and marker in line:
                    on_pause()
                    stdin.write("\n")
                    stdin.flush()
            stderr = err.read().decode(errors="replace")
            rc = out.channel.recv_exit_status()
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            raise GuestError(f"guest command {command!r} failed over SSH: {exc or 'timeout'}",
                             fix="the guest may have hung or panicked: see the console log"
                             ) from exc
        return CmdResult(rc, "".join(out_lines), stderr)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
