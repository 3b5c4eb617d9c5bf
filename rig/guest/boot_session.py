"""A guest left running by `rig boot`, found again by `rig ssh`, `rig hints`, `rig stop`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rig.errors import RigError
from rig.guest.qmp import Monitor
from rig.guest.ssh import GuestShell
from rig.paths import cache_root


def state_path() -> Path:
    return cache_root() / "run" / "vm.json"


@dataclass(frozen=True)
class Session:
    pid: int
    ssh_port: int
    qmp_socket: str
    console_log: str
    client_key: str
    host_key: str
    accel: str

    def save(self) -> None:
        p = state_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(asdict(self), indent=1))

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def shell(self, timeout: float = 10.0) -> GuestShell:
        sh = GuestShell(self.ssh_port, Path(self.client_key), Path(self.host_key))
        sh.connect(timeout)
        return sh

    def qmp(self) -> Monitor:
        q = Monitor(self.qmp_socket)
        q.settimeout(30.0)
        q.connect()
        return q

    def stop(self, timeout: float = 10.0) -> None:
        with contextlib.suppress(Exception):
            q = self.qmp()
            q.cmd("quit")
            q.close()
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        state_path().unlink(missing_ok=True)


def load() -> Session:
    try:
        data = json.loads(state_path().read_text())
    except FileNotFoundError:
        raise RigError("no guest is running", fix="start one with `rig boot`") from None
    s = Session(**data)
    if not s.alive():
        state_path().unlink(missing_ok=True)
        raise RigError(f"the guest started by `rig boot` (pid {s.pid}) is gone; its console: "
                       f"{s.console_log}", fix="start one with `rig boot`")
    return s
