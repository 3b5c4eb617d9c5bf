"""A guest left running by `rig boot`, found again by `rig ssh`, `rig hints`, `rig stop`."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from rig.errors import RigError
from rig.guest.qemu import QemuProcess
from rig.guest.qmp import Monitor
from rig.guest.ssh import GuestShell
from rig.paths import cache_root

log = logging.getLogger(__name__)


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

    def process(self) -> QemuProcess:
        """The QEMU (not our child: `rig boot` started it), known by its pid and,
        so a reused pid is not taken for it, its QMP socket on its command line."""
        return QemuProcess.attach(self.pid, expect=self.qmp_socket)

    def alive(self) -> bool:
        return self.process().alive()

    def shell(self, timeout: float = 10.0) -> GuestShell:
        sh = GuestShell(self.ssh_port, Path(self.client_key), Path(self.host_key))
        sh.connect(timeout)
        return sh

    def qmp(self, timeout: float = 10.0) -> Monitor:
        """QEMU's QMP, connected within `timeout` s; commands time out after 30 s."""
        return self.process().connect_qmp(self.qmp_socket, timeout, cmd_timeout=30.0)

    def stop(self, timeout: float = 10.0) -> None:
        """QMP quit (waiting up to `timeout` s), then SIGTERM and SIGKILL to QEMU's
        process group, each wait bounded; without QMP, SIGTERM at once."""
        qemu = self.process()
        if qemu.alive():
            try:
                qemu.connect_qmp(self.qmp_socket, min(timeout, 5.0), cmd_timeout=timeout)
            except RigError as exc:
                log.debug("rig stop: no QMP (%s): signals only", exc.message)
            qemu.stop(quit_timeout=timeout)
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
