"""What the guests of one run share: the run log, the guests alive (to stop them
on Ctrl-C or a stop signal), and whether the run is halting or may boot no
more guests, and why."""

from __future__ import annotations

import threading
from pathlib import Path

from rig.builder.artifacts import Artifacts
from rig.errors import RigError
from rig.execution.runlog import RunLog
from rig.guest import topology
from rig.guest.interface import GuestVM, VMFactory


class Control:
    """What the guests of one run share: the run log, the guests alive (to
    stop them on Ctrl-C), and whether the run is halting or may boot no more
    guests, and why."""

    def __init__(self, log: RunLog) -> None:
        self.log = log
        self.halted: str | None = None      # Ctrl-C: every group stops now
        self.no_boot: str | None = None     # a set-up error every guest would hit
        self._lock = threading.Lock()
        self._guests: list[GuestVM] = []

    def halt(self, why: str) -> None:
        with self._lock:
            if self.halted is None:
                self.halted = why

    def refuse_boots(self, why: str) -> None:
        with self._lock:
            if self.no_boot is None:
                self.no_boot = why

    def track(self, factory: VMFactory) -> VMFactory:
        """The factory, its guests known to stop_all; none made once halted."""
        def make(arts: Artifacts, topo: topology.Topology, rundir: Path,
                 accel: str) -> GuestVM:
            with self._lock:
                if self.halted is not None:
                    raise RigError(self.halted)
                vm = factory(arts, topo, rundir, accel)
                self._guests.append(vm)
            return vm
        return make

    def untrack(self, vm: GuestVM) -> bool:
        """Leave `vm` running from now on (stop_all no longer stops it); False
        if the run is halting already."""
        with self._lock:
            if self.halted is not None:
                return False
            self._guests = [g for g in self._guests if g is not vm]
            return True

    def stop_all(self) -> None:
        """Stop every guest (from the main thread, on Ctrl-C): its group's
        command fails at once and the group ends."""
        with self._lock:
            guests = list(self._guests)
        for vm in guests:
            try:
                vm.stop(timeout=2.0)
            except Exception as exc:
                self.log.exception("stopping a guest on Ctrl-C", exc)

