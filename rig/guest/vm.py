"""One guest: QEMU started from the built artifacts, its console, QMP and SSH.

Boot progress is read from the serial console: the kernel banner, then the
stages /init prints. Every wait has a timeout; a failure names the last
stage reached and keeps the console log.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError

from rig import proc
from rig.builder.artifacts import Artifacts
from rig.errors import BuildError, GuestError, RigError
from rig.guest import topology
from rig.guest.qemu import QemuProcess
from rig.guest.qmp import Monitor
from rig.guest.ssh import GuestShell

STAGES = [
    ("kernel", "Linux version"),
    ("init", "tphlab-stage: init"),
    ("network", "tphlab-stage: network"),
    ("sshd", "tphlab-stage: sshd"),
    ("ready", "tphlab-ready"),
]
PANIC_MARKS = ("Kernel panic", "---[ end Kernel panic")
# A snapshot is written with the guest's RAM at fixed offsets in the file
# (mapped-ram): zero pages are never written, and both sides must agree.
MIGRATION_CAPS = [{"capability": "mapped-ram", "state": True}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def console_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "    (no console output)"
    return "\n".join(f"    | {ln}" for ln in text[-lines:]) or "    (no console output)"


def guest_argv(arts: Artifacts, topo: topology.Topology, accel: str,
               tph_devices: bool = True) -> list[str]:
    """A guest's command line without what is one run's own (its SSH port, QMP
    socket and console file): what makes the guest, for a snapshot's key."""
    boot = topology.Boot(arts.qemu, arts.bios, arts.datadir, arts.kernel, arts.initrd, accel,
                         0, Path("QMP"), Path("CONSOLE"))
    return topology.qemu_argv(boot, topo, tph_devices)


class VM:
    def __init__(self, arts: Artifacts, topo: topology.Topology, rundir: Path, accel: str,
                 tph_devices: bool = True, outlive_rig: bool = False) -> None:
        """`outlive_rig`: the guest may be left running when the rig exits (`rig
        boot`, --keep-guest); other guests die with the rig process."""
        self.arts = arts
        self.outlive_rig = outlive_rig
        self.topo = topo
        self.rundir = rundir
        self.accel = accel
        self.tph_devices = tph_devices
        rundir.mkdir(parents=True, exist_ok=True)
        self.console = rundir / "console.log"
        self.qmp_path = rundir / "qmp.sock"
        self.qemu_log = rundir / "qemu.log"
        self.ssh_port = free_port()
        self.proc: QemuProcess | None = None
        self.shell: GuestShell | None = None
        self.stage = "qemu"
        self.boot_seconds = 0.0

    def argv(self) -> list[str]:
        boot = topology.Boot(self.arts.qemu, self.arts.bios, self.arts.datadir, self.arts.kernel,
                             self.arts.initrd,
                             self.accel, self.ssh_port, self.qmp_path, self.console)
        return topology.qemu_argv(boot, self.topo, self.tph_devices)

    def _spawn(self, extra: list[str]) -> float:
        """Start QEMU (argv() + extra); the time.monotonic() it started at."""
        for p in (self.console, self.qmp_path):
            p.unlink(missing_ok=True)
        started = time.monotonic()
        argv = self.argv() + extra
        (self.rundir / "cmdline").write_text(" ".join(argv) + "\n")
        self.proc = QemuProcess.spawn(argv, self.qemu_log, outlive_rig=self.outlive_rig)
        return started

    def start(self, timeout: float = 120.0,
              on_stage: Callable[[str, float], None] | None = None) -> None:
        """Start QEMU and wait until the guest answers over SSH."""
        started = self._spawn([])
        assert self.proc is not None
        deadline = started + timeout
        seen = 0
        while seen < len(STAGES):
            text = self.console.read_text(errors="replace") if self.console.exists() else ""
            # The furthest stage whose marker is on the console ("quiet" hides
            # the kernel banner, so earlier markers may never show).
            reached = max((i + 1 for i, (_, mark) in enumerate(STAGES) if mark in text),
                          default=0)
            while seen < reached:
                self.stage = STAGES[seen][0]
                if on_stage:
                    on_stage(self.stage, time.monotonic() - started)
                seen += 1
            if any(m in text for m in PANIC_MARKS):
                self.stop()
                raise GuestError(f"guest kernel panicked during boot (after stage "
                                 f"{self.stage}); console {self.console}:\n"
                                 f"{console_tail(self.console)}")
            if self.proc.poll() is not None:
                err = self.qemu_log.read_text(errors="replace").strip()[-2000:]
                exc_type = GuestError if self.stage != "qemu" else RigError
                raise exc_type(f"QEMU exited ({self.proc.returncode}) during boot after stage "
                               f"{self.stage}: {err}\n{console_tail(self.console)}",
                               log=str(self.qemu_log),
                               fix="check the command line in " + str(self.rundir / "cmdline"))
            if time.monotonic() > deadline:
                self.stop()
                raise GuestError(f"guest boot hung: no progress past stage {self.stage} in "
                                 f"{timeout:.0f} s; console {self.console}:\n"
                                 f"{console_tail(self.console)}")
            time.sleep(0.02)
        self._connect_shell(max(5.0, deadline - time.monotonic()))
        self._check_kernel()
        self.boot_seconds = time.monotonic() - started
        self.stage = "ssh"
        if on_stage:
            on_stage("ssh", self.boot_seconds)

    def _check_kernel(self) -> None:
        """Stop the guest unless it runs the kernel that was built: its `uname -v`
        against the version string the build linked. A bzImage holding another
        build's kernel would give a verdict about code nobody asked for."""
        built = self.arts.kernel_version
        if built is None:
            return
        assert self.shell is not None
        said = self.shell.run("uname -v", timeout=10).stdout.strip()
        if said == built:
            return
        self.stop()
        raise BuildError(f"the guest runs a kernel other than the one built: it says {said!r}, "
                         f"the build linked {built!r}", log=str(self.rundir),
                         fix=f"{self.arts.kernel} is not its build's own image: remove the "
                             f"build_dir named in {self.arts.kernel.parent / 'meta.json'}, run "
                             "the same command again with CCACHE_DISABLE=1 (an object the "
                             "build reused was stale) and report it")

    def _connect_shell(self, timeout: float) -> None:
        """A fresh SSH connection on this run's port (the guest's sshd is up)."""
        self.shell = GuestShell(self.ssh_port, self.arts.client_key, self.arts.host_key,
                                persistent=True)
        try:
            self.shell.connect(timeout)
        except GuestError as exc:
            self.stop()
            raise GuestError(f"{exc.message}; console {self.console}:\n"
                             f"{console_tail(self.console)}", fix=exc.fix,
                             log=str(self.rundir)) from exc

    # Snapshots (rig.guest.snapshot keeps them): QEMU's migration to a file.

    def save(self, state: Path, timeout: float = 60.0) -> None:
        """Save the running guest into `state` and run it on.

        SSH is closed first (slirp does not migrate a host-forwarded
        connection: a restored guest gets a fresh one), the guest is paused,
        migrated to the file with mapped-ram, then continued and reconnected.
        A failure raises RigError and leaves the guest running when it can.
        """
        if self.shell is not None:
            self.shell.close()
            self.shell = None
        deadline = time.monotonic() + timeout
        try:
            self.qmp_cmd("stop")
            self.qmp_cmd("migrate-set-capabilities", capabilities=MIGRATION_CAPS)
            self.qmp_cmd("migrate", uri=f"file:{state}")
            self._migration_done("saving the guest", deadline)
        finally:
            self.qmp_cmd("cont")
            self._connect_shell(max(5.0, deadline - time.monotonic()))

    def restore(self, state: Path, timeout: float = 30.0) -> None:
        """Start QEMU from a snapshot instead of booting: `-incoming defer`,
        migrate-incoming from `state`, cont, and a fresh SSH connection.

        RigError when QEMU refuses or cannot read the snapshot, or the
        restored guest does not answer SSH within `timeout`; QEMU is stopped
        then.
        """
        started = self._spawn(["-incoming", "defer"])
        deadline = started + timeout
        try:
            self.qmp_cmd("migrate-set-capabilities", capabilities=MIGRATION_CAPS)
            self.qmp_cmd("migrate-incoming", uri=f"file:{state}", **{"exit-on-error": False})
            self._migration_done("restoring the guest", deadline)
            self.qmp_cmd("cont")
            self._connect_shell(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        self.boot_seconds = time.monotonic() - started
        self.stage = "ssh"

    def _migration_done(self, what: str, deadline: float) -> None:
        """Wait for the migration to complete; RigError if it fails or the deadline passes."""
        while True:
            info = self.qmp_cmd("query-migrate")
            status = info.get("status", "none")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                why = info.get("error-desc") or self._qemu_error() or status
                raise RigError(f"{what}: QEMU's migration {status}: {why}",
                               log=str(self.qemu_log))
            if time.monotonic() > deadline:
                raise RigError(f"{what}: the migration is still {status}", log=str(self.qemu_log))
            time.sleep(0.005)

    def _qemu_error(self) -> str:
        try:
            return self.qemu_log.read_text(errors="replace").strip()[-1000:]
        except FileNotFoundError:
            return ""

    def qmp(self) -> Monitor:
        """QEMU's QMP, connected on first use (within 30 s; commands time out after 30 s)."""
        if self.proc is None:
            raise GuestError("QEMU is not running", log=str(self.qemu_log))
        return self.proc.connect_qmp(self.qmp_path, timeout=30.0, cmd_timeout=30.0)

    def qmp_cmd(self, name: str, **args: Any) -> Any:
        try:
            return self.qmp().cmd(name, **args)
        except ExecuteError as exc:
            raise RigError(f"QMP {name} failed: {exc}") from exc
        except Exception as exc:  # the monitor is gone: QEMU died or hangs up
            raise GuestError(f"QMP {name}: no answer from QEMU ({type(exc).__name__}: "
                             f"{exc})", log=str(self.qemu_log)) from exc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def stop(self, timeout: float = 10.0) -> None:
        """End QEMU and reap it: QMP quit (waiting up to `timeout` s) if QMP was
        opened, then SIGTERM and SIGKILL to its process group, each wait bounded.
        A QEMU whose QMP never opened gets SIGTERM at once."""
        if self.shell is not None:
            self.shell.close()
            self.shell = None
        if self.proc is not None:
            self.proc.stop(quit_timeout=timeout)
            self.proc = None


def require_device(qemu: Path) -> None:
    out = proc.run_captured([qemu, "-device", "help"], timeout=60,
                            what=f"{qemu} -device help").stdout
    if "tph-testdev" not in out:
        raise RigError(f"{qemu} has no tph-testdev device",
                       fix="build QEMU with the qemu-device/ series (drop --qemu-tree, or "
                           "apply the series to your tree)")
