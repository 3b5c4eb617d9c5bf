"""Faults `rig run --inject` puts into the guests, to show how the rig fails.

Each fault that kills or silences the guest must end the run within its
timeout with exit code 3 (the guest) or 2 (the rig), the console log's path
and last lines printed, QEMU reaped and its ports closed. `explain` turns
whatever error a dead or silent guest caused into that message. `warn`
leaves the guest alive: the kernel warning must fail the scenario that
sees it in dmesg (exit 1), also when the machine is loaded.
"""

from __future__ import annotations

import contextlib
import os
import signal

from rig.errors import GuestError, RigError
from rig.guest.topology import Topology
from rig.guest.vm import PANIC_MARKS, VM, console_tail

FAULTS = {
    "panic": "crash the guest kernel (sysrq c) once the devices are bound",
    "kill-qemu": "SIGKILL QEMU once the devices are bound",
    "ssh-refused": "boot a guest whose SSH server never starts",
    "hang": "stop the guest's vCPUs (QMP stop) once the devices are bound",
    "warn": "make the test importer WARN once the devices are bound (the run fails "
            "on it, its guest lives on)",
}
WARN_PARAM = "/sys/module/tph_importer/parameters/inject_warn"
NO_SSH = "tphlab.nossh=1"   # /init skips dropbear


def boot_topology(topo: Topology, fault: str | None) -> Topology:
    """Faults injected at boot change the topology's kernel command line."""
    if fault == "ssh-refused":
        return topo.with_(append=(*topo.append, NO_SSH))
    return topo


def inject(vm: VM, fault: str | None) -> None:
    """Faults injected into a booted guest, after its devices are bound."""
    if fault == "panic":
        assert vm.shell is not None
        # The guest dies before it answers; -no-reboot makes QEMU exit.
        with contextlib.suppress(GuestError):
            vm.shell.run("echo c > /proc/sysrq-trigger", timeout=5)
    elif fault == "kill-qemu":
        assert vm.proc is not None
        os.kill(vm.proc.pid, signal.SIGKILL)
    elif fault == "hang":
        vm.qmp_cmd("stop")
    elif fault == "warn":
        assert vm.shell is not None
        res = vm.shell.run(f"echo 1 > {WARN_PARAM}", timeout=10)
        if res.rc != 0:
            raise RigError(f"--inject warn: writing {WARN_PARAM} failed: {res.stderr.strip()}",
                           fix="the test importer of this tree lacks inject_warn: rebuild it")


def explain(vm: VM, what: str, exc: RigError) -> GuestError:
    """One error naming what the guest did, with its console's path and last lines."""
    console = vm.console.read_text(errors="replace") if vm.console.exists() else ""
    if any(m in console for m in PANIC_MARKS):
        state = "the guest kernel panicked"
    elif vm.proc is not None and vm.proc.poll() is not None:
        state = f"QEMU exited with status {vm.proc.returncode}"
    else:
        state = "the guest stopped answering"
    return GuestError(f"{what}: {state} ({exc.message})\nconsole {vm.console}, last lines:\n"
                      f"{console_tail(vm.console, 15)}", log=str(vm.rundir),
                      fix="the run's logs are kept in the directory above")
