"""What the rig uses of a guest, its shell and a command's result, as protocols:
rig.guest.vm.VM is the real guest, the tests stand fakes in for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rig.builder.artifacts import Artifacts
from rig.guest import topology


class CmdOutput(Protocol):
    """A guest command's result (rig.guest.ssh.CmdResult)."""

    @property
    def rc(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


class Shell(Protocol):
    """What the rig uses of rig.guest.ssh.GuestShell."""

    def run(self, command: str, timeout: float = ...) -> CmdOutput: ...


class GuestVM(Protocol):
    """What the rig uses of a guest (rig.guest.vm.VM; a fake one in tests).

    rig.guest.faults reads its `console`, `rundir` and `proc` too.
    """

    @property
    def topo(self) -> topology.Topology: ...
    @property
    def stage(self) -> str: ...
    @property
    def boot_seconds(self) -> float: ...
    @property
    def console(self) -> Path: ...
    @property
    def shell(self) -> Shell | None: ...

    def start(self, timeout: float = ...,
              on_stage: Callable[[str, float], None] | None = ...) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def alive(self) -> bool: ...
    def qmp_cmd(self, name: str, **args: Any) -> Any: ...


VMFactory = Callable[[Artifacts, topology.Topology, Path, str], GuestVM]


G = TypeVar("G", bound=GuestVM)

