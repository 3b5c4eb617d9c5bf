"""A guest left running by `rig boot` (or `rig run --keep-guest`), found again by
`rig ssh`, `rig hints`, `rig stop`.

The session file names its topology and its tph-testdevs by role (exporter,
importer, spare), QOM id and guest PCI address, as the guest's
/etc/tphlab/devices does: `rig hints --device importer`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rig.errors import RigError
from rig.guest.qemu import QemuProcess
from rig.guest.qmp import Monitor
from rig.guest.ssh import GuestShell
from rig.guest.topology import ROLES, Device
from rig.guest.vm import VM
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
    topology: str = "default"
    devices: tuple[Device, ...] = field(default=())    # empty in a session of an older rig

    @classmethod
    def of(cls, vm: VM, accel: str, devices: list[Device]) -> Session:
        """The session of a booted guest (its QEMU running, its devices bound)."""
        assert vm.proc is not None
        return cls(vm.proc.pid, vm.ssh_port, str(vm.qmp_path), str(vm.console),
                   str(vm.arts.client_key), str(vm.arts.host_key), accel, vm.topo.name,
                   tuple(devices))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        devices = tuple(Device(**d) for d in data.pop("devices", ()))
        return cls(**data, devices=devices)

    def device(self, name: str) -> tuple[str, Device | None]:
        """`--device NAME`: a role (exporter, importer, spare), a QOM id or a QOM
        path, as (its QOM path, the Device if the session knows it)."""
        if name.startswith("/"):
            return name, next((d for d in self.devices if d.qom_path == name), None)
        for d in self.devices:
            if name in (d.role, d.qom_id):
                return d.qom_path, d
        if not self.devices and name in ROLES:         # a session of an older rig
            return f"/machine/peripheral/{ROLES[name]}", None
        if not self.devices and name in ROLES.values():
            return f"/machine/peripheral/{name}", None
        known = ", ".join(f"{d.role} ({d.qom_id}, {d.bdf})" for d in self.devices)
        what = (f"this guest (topology {self.topology}) has no {name}" if name in ROLES
                else f"no tph-testdev {name!r} in this guest")
        raise RigError(f"--device {name}: {what}",
                       fix=f"name a role or QOM id of: {known or ', '.join(ROLES)}; "
                           "or give a QOM path (/machine/peripheral/ID)")

    def role_of(self, requester_id: int) -> str | None:
        """The role of the device with this requester ID, if the session knows it."""
        return next((d.role for d in self.devices if d.requester_id == requester_id), None)

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
    try:
        s = Session.from_dict(data)
    except TypeError as exc:
        raise RigError(f"{state_path()} is not a session this rig reads ({exc})",
                       fix=f"stop that guest by its pid, then remove {state_path()}") from None
    if not s.alive():
        state_path().unlink(missing_ok=True)
        raise RigError(f"the guest started by `rig boot` (pid {s.pid}) is gone; its console: "
                       f"{s.console_log}", fix="start one with `rig boot`")
    return s
