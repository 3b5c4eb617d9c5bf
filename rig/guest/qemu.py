"""One QEMU process: started in a process group of its own, its QMP, and its end.

The bench guest (rig.guest.vm), the qtest client's QEMU (rig.qdev.qtest)
and the guest `rig boot` leaves running (rig.guest.boot_session) all go
through QemuProcess:

- `spawn` starts QEMU in a new session, so its pid is its process group's
  id and every signal reaches the whole group; a signal to the rig never
  reaches it, so the rig stops it itself (on SIGTERM and SIGHUP too:
  rig.stopsignals), and unless it is to outlive the rig it gets a
  parent-death signal: SIGKILL, which no handler sees, takes it down too;
- `connect_qmp` connects to its QMP socket under a deadline, retrying while
  QEMU creates the socket and giving up at once if QEMU exits;
- `stop` ends it: QMP `quit` if QMP is connected, then SIGTERM to the group,
  then SIGKILL, then reaps it. Every wait is bounded; a QEMU whose QMP never
  opened is sent SIGTERM at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

from rig.errors import RigError, ToolError
from rig.guest.qmp import Monitor

log = logging.getLogger(__name__)

QUIT_TIMEOUT = 10.0   # for QMP quit to end QEMU
TERM_TIMEOUT = 5.0    # for SIGTERM to end it
KILL_TIMEOUT = 5.0    # for SIGKILL to end it (a process in D state may take a while)
POLL = 0.02


class QemuError(RigError):
    """QEMU could not be started, reached over QMP or stopped."""


# The parent-death signal (prctl PR_SET_PDEATHSIG, set by util-linux's setpriv
# before it execs QEMU) fires when the *thread* that forked the child ends, not
# the process: a QEMU started by a worker thread would be killed when the
# worker ends. So every such QEMU is forked by one launcher thread that lives
# as long as the rig process.
PDEATHSIG = ["setpriv", "--pdeathsig", "KILL", "--"]


class _Launcher:
    """A daemon thread that runs Popen for others: its children are killed
    when the rig process ends, however it ends."""

    Job = tuple[Callable[[], "subprocess.Popen[bytes]"], "Future[subprocess.Popen[bytes]]"]

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Launcher.Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def popen(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        """start() run in the launcher thread; what it returns or raises."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="qemu-launcher",
                                                daemon=True)
                self._thread.start()
        fut: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((start, fut))
        return fut.result()

    def _serve(self) -> None:
        while True:
            start, fut = self._jobs.get()
            try:
                fut.set_result(start())
            except BaseException as exc:   # handed to the caller, raised there
                fut.set_exception(exc)


_LAUNCHER = _Launcher()


def _proc_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat (R, S, Z, ...); None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    return stat.rpartition(")")[2].split()[0]


class QemuProcess:
    """A QEMU process: our child (`spawn`), or one another rig process started
    and left running (`attach`), which can be signalled but not reaped."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None,
                 argv: Sequence[str] = (), expect: str | None = None) -> None:
        self.pid = pid
        self.argv = list(argv)
        self.qmp: Monitor | None = None
        self._popen = popen
        self._expect = expect
        self._lock = threading.Lock()

    @classmethod
    def spawn(cls, argv: Sequence[str], log_path: Path,
              outlive_rig: bool = False) -> QemuProcess:
        """Start argv in a new session, stdout and stderr into log_path. Unless
        `outlive_rig` (a guest `rig boot` leaves running), it is SIGKILLed when
        the rig process ends, even by SIGKILL."""
        args = [str(a) for a in argv]
        if not Path(args[0]).exists() and shutil.which(args[0]) is None:
            raise ToolError(f"{args[0]} does not exist", fix="build QEMU first (rig build qemu)")
        if not outlive_rig and shutil.which(PDEATHSIG[0]) is None:
            raise ToolError(f"{PDEATHSIG[0]} is not installed (it ties each QEMU's life to "
                            "the rig's)", fix="apt-get install util-linux")
        full = args if outlive_rig else [*PDEATHSIG, *args]
        with log_path.open("wb") as out:
            def start() -> subprocess.Popen[bytes]:
                return subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            popen = start() if outlive_rig else _LAUNCHER.popen(start)
        log.debug("qemu pid %d: %s", popen.pid, " ".join(args))
        return cls(popen.pid, popen, args)

    @classmethod
    def attach(cls, pid: int, expect: str | None = None) -> QemuProcess:
        """A QEMU that is not our child, leading its own process group. With
        `expect`, a process whose command line lacks it is taken as gone (the
        pid was reused)."""
        return cls(pid, None, expect=expect)

    # State

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped (None while running, or when not our child)."""
        return self._popen.returncode if self._popen is not None else None

    def poll(self) -> int | None:
        """The exit status if QEMU has exited (reaping it), else None. For a QEMU
        that is not our child the status is unknown: -1 once it is gone."""
        if self._popen is not None:
            return self._popen.poll()
        return None if self.alive() else -1

    def alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        if _proc_state(self.pid) in (None, "Z", "X"):
            return False
        if self._expect is not None:
            try:
                cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
            except OSError:
                return True   # no /proc to tell: trust the pid
            return self._expect.encode() in cmdline
        return True

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for QEMU to exit (reaping our child); True if it did."""
        if self._popen is not None:
            try:
                self._popen.wait(timeout=max(0.0, timeout))
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL)
        return True

    def signal_group(self, sig: int) -> None:
        """Send `sig` to QEMU's whole process group (nothing if it is gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    # QMP

    def connect_qmp(self, path: Path | str, timeout: float,
                    cmd_timeout: float = 30.0) -> Monitor:
        """Connect to QEMU's QMP socket within `timeout` s (retrying while the
        socket is not there yet); commands then time out after `cmd_timeout` s.

        Raises QemuError when QEMU exits first or the deadline passes.
        """
        if self.qmp is not None:
            return self.qmp
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            if not self.alive():
                raise QemuError(f"QEMU (pid {self.pid}) exited before its QMP socket {path} "
                                f"answered")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QemuError(f"QEMU's QMP socket {path} did not answer in {timeout:.0f} s"
                                + (f" ({type(last).__name__}: {last})" if last else ""))
            if not Path(path).exists():   # not created yet (connecting would log an error)
                time.sleep(min(POLL, remaining))
                continue
            mon = Monitor(str(path))
            try:
                mon.connect(timeout=remaining)
            except TimeoutError:
                self._discard(mon)
                raise QemuError(f"QEMU's QMP socket {path} accepted but sent no greeting in "
                                f"{timeout:.0f} s") from None
            except Exception as exc:   # qemu.qmp's ConnectError: no socket yet, refused
                self._discard(mon)
                last = exc
                time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
                continue
            mon.settimeout(cmd_timeout)
            log.debug("qemu pid %d: QMP connected on %s", self.pid, path)
            self.qmp = mon
            return mon

    @staticmethod
    def _discard(mon: Monitor) -> None:
        with contextlib.suppress(Exception):
            mon.close(timeout=1.0)

    # The end

    def stop(self, quit_timeout: float = QUIT_TIMEOUT, term_timeout: float = TERM_TIMEOUT,
             kill_timeout: float = KILL_TIMEOUT) -> int | None:
        """End QEMU: QMP quit if connected, SIGTERM, SIGKILL; reap it. Each step
        waits at most its timeout. Returns the exit status (None if unknown)."""
        with self._lock:
            mon, self.qmp = self.qmp, None
            if mon is not None:
                deadline = time.monotonic() + quit_timeout
                if self.alive():
                    mon.settimeout(max(0.1, quit_timeout))
                    try:
                        mon.cmd("quit")
                    except Exception as exc:   # QEMU gone or hung: the signals follow
                        log.debug("qemu pid %d: QMP quit: %s: %s", self.pid,
                                  type(exc).__name__, exc)
                with contextlib.suppress(Exception):
                    mon.close(timeout=max(0.1, deadline - time.monotonic()))
                self.wait(deadline - time.monotonic())
            for sig, timeout in ((signal.SIGTERM, term_timeout), (signal.SIGKILL, kill_timeout)):
                if not self.alive():
                    break
                log.debug("qemu pid %d: %s to its process group", self.pid, sig.name)
                self.signal_group(sig)
                self.wait(timeout)
            if self.alive():
                log.warning("QEMU (pid %d) is still there %.0f s after SIGKILL", self.pid,
                            kill_timeout)
            return self.poll() if self._popen is not None else None
