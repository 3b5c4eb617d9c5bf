"""QEMU under the qtest accelerator, driven over its qtest protocol.

`QtestClient` speaks the line protocol of QEMU's ``-qtest`` chardev: one
command per line (``readl 0xb0000000``, ``writew ADDR VALUE``, ``outl PORT
VALUE``, ``clock_step NS`` ...), answered by ``OK [value]`` or ``FAIL
reason``; ``IRQ ...`` lines come only with IRQ interception and are skipped.
`qtest_qemu()` starts QEMU (``-accel qtest``, no guest code runs) with a
device list, a qtest socket and a QMP socket, both served by QEMU, and
always stops and reaps it (rig.guest.qemu: QMP quit, SIGTERM, SIGKILL to
its process group). Every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.errors import RigError
from rig.guest.qemu import QemuProcess

_WIDTH_BITS = {"b": 8, "w": 16, "l": 32, "q": 64}


class QtestError(RigError):
    """QEMU refused a qtest command, stopped answering or could not start."""


class QemuExited(QtestError):
    """QEMU exited (before it was told to): its exit code and its output."""

    def __init__(self, message: str, returncode: int, output: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.output = output


def _check(value: int, bits: int, what: str) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{what} {value:#x} does not fit in {bits} bits")


class QtestClient:
    """The client side of one qtest connection (QEMU is the server)."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._sock.settimeout(timeout)
        self._buf = b""

    @classmethod
    def connect(cls, path: Path, timeout: float,
                alive: Callable[[], bool] = lambda: True) -> QtestClient:
        """Connect to QEMU's qtest socket, retrying until `timeout` or `alive()` is false."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return cls(sock, timeout)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            if not alive():
                raise QtestError(f"QEMU exited before opening its qtest socket {path}")
            if time.monotonic() > deadline:
                raise QtestError(f"no qtest socket at {path} after {timeout:.0f} s")
            time.sleep(0.01)

    def close(self) -> None:
        self._sock.close()

    def _read_line(self) -> str:
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(4096)
            except TimeoutError as exc:
                raise QtestError("QEMU did not answer a qtest command in time") from exc
            except OSError as exc:
                raise QtestError(f"qtest connection lost: {exc}") from exc
            if not chunk:
                raise QtestError("QEMU closed the qtest connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("ascii", errors="replace")

    def command(self, line: str) -> str:
        """Send one command; return what follows ``OK`` (may be empty)."""
        if "\n" in line:
            raise ValueError("a qtest command is one line")
        try:
            self._sock.sendall(line.encode("ascii") + b"\n")
        except OSError as exc:
            raise QtestError(f"qtest connection lost: {exc}") from exc
        while True:
            reply = self._read_line()
            if not reply.startswith("IRQ "):
                break
        word, _, rest = reply.partition(" ")
        if word != "OK":
            raise QtestError(f"qtest command {line!r} failed: {reply}")
        return rest.strip()

    def _value(self, line: str) -> int:
        return int(self.command(line), 0)

    # Memory

    def read(self, width: str, addr: int) -> int:
        _check(addr, 64, "address")
        return self._value(f"read{width} {addr:#x}")

    def write(self, width: str, addr: int, value: int) -> None:
        _check(addr, 64, "address")
        _check(value, _WIDTH_BITS[width], "value")
        self.command(f"write{width} {addr:#x} {value:#x}")

    def readb(self, addr: int) -> int:
        return self.read("b", addr)

    def readw(self, addr: int) -> int:
        return self.read("w", addr)

    def readl(self, addr: int) -> int:
        return self.read("l", addr)

    def readq(self, addr: int) -> int:
        return self.read("q", addr)

    def writeb(self, addr: int, value: int) -> None:
        self.write("b", addr, value)

    def writew(self, addr: int, value: int) -> None:
        self.write("w", addr, value)

    def writel(self, addr: int, value: int) -> None:
        self.write("l", addr, value)

    def writeq(self, addr: int, value: int) -> None:
        self.write("q", addr, value)

    # I/O ports

    def _out(self, width: str, port: int, value: int) -> None:
        _check(port, 16, "port")
        _check(value, _WIDTH_BITS[width], "value")
        self.command(f"out{width} {port:#x} {value:#x}")

    def _in(self, width: str, port: int) -> int:
        _check(port, 16, "port")
        return self._value(f"in{width} {port:#x}")

    def outb(self, port: int, value: int) -> None:
        self._out("b", port, value)

    def outw(self, port: int, value: int) -> None:
        self._out("w", port, value)

    def outl(self, port: int, value: int) -> None:
        self._out("l", port, value)

    def inb(self, port: int) -> int:
        return self._in("b", port)

    def inw(self, port: int) -> int:
        return self._in("w", port)

    def inl(self, port: int) -> int:
        return self._in("l", port)

    # Virtual clock

    def clock_step(self, ns: int | None = None) -> int:
        """Advance the virtual clock by `ns` (default: to the next timer); return it."""
        if ns is None:
            return self._value("clock_step")
        _check(ns, 63, "clock step")
        return self._value(f"clock_step {ns}")


@dataclass
class QtestQemu:
    """A running QEMU: its process, qtest client, QMP client and output log."""

    proc: QemuProcess
    qtest: QtestClient
    qmp: Any            # rig.guest.qmp.Monitor (qemu.qmp is untyped)
    argv: list[str]
    log: Path

    def alive(self) -> bool:
        return self.proc.alive()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def qmp_cmd(self, name: str, **args: object) -> Any:
        """Run a QMP command; its ``return`` value, or qemu.qmp.ExecuteError."""
        return self.qmp.cmd(name, **args)

    def qmp_raw(self, name: str, args: dict[str, object] | None = None) -> dict[str, Any]:
        """Run a QMP command; the whole response (``return`` or ``error``)."""
        resp: dict[str, Any] = self.qmp.cmd_raw(name, args)
        return resp


def qemu_argv(qemu: Path, datadir: Path, devices: Sequence[str], qtest_sock: Path,
              qmp_sock: Path, machine: str = "q35", extra: Sequence[str] = ()) -> list[str]:
    """The command line: `devices` are ``-device`` values, in order."""
    argv = [str(qemu), "-machine", machine, "-accel", "qtest", "-L", str(datadir),
            "-nodefaults", "-no-user-config", "-display", "none", "-nic", "none",
            "-qtest", f"unix:{qtest_sock},server=on,wait=off",
            "-qmp", f"unix:{qmp_sock},server=on,wait=off"]
    for dev in devices:
        argv += ["-device", dev]
    return [*argv, *extra]


@contextlib.contextmanager
def qtest_qemu(qemu: Path, datadir: Path, devices: Sequence[str], *, machine: str = "q35",
               extra: Sequence[str] = (), timeout: float = 10.0) -> Iterator[QtestQemu]:
    """Start QEMU under qtest with `devices`; yield it connected; always kill and reap it.

    Raises QemuExited when QEMU exits during start-up (bad properties, ...)
    with its output, QtestError when it does not answer in `timeout` s.
    """
    rundir = Path(tempfile.mkdtemp(prefix="tphq-"))  # short: unix socket paths are limited
    qtest_sock, qmp_sock, log = rundir / "qtest.sock", rundir / "qmp.sock", rundir / "qemu.log"
    argv = qemu_argv(qemu, datadir, devices, qtest_sock, qmp_sock, machine, extra)
    qtest: QtestClient | None = None
    try:
        proc = QemuProcess.spawn(argv, log)
        try:
            try:
                qtest = QtestClient.connect(qtest_sock, timeout, proc.alive)
                # Answered once the main loop runs, i.e. after every device realized
                qtest.command("endianness")
                qmp = proc.connect_qmp(qmp_sock, timeout, cmd_timeout=timeout)
            except Exception as exc:
                if not proc.wait(timeout):
                    raise QtestError(f"QEMU did not start: {exc}; {shlex.join(argv)}") from exc
                rc = proc.returncode if proc.returncode is not None else -1
                text = log.read_text(errors="replace")
                raise QemuExited(f"QEMU exited ({rc}) during start-up: {text.strip()}",
                                 rc, text) from exc
            yield QtestQemu(proc, qtest, qmp, argv, log)
        finally:
            proc.stop(quit_timeout=timeout, term_timeout=timeout, kill_timeout=timeout)
            if qtest is not None:
                qtest.close()
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
