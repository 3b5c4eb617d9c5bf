"""Fakes the tests share: scenarios, and guests that answer the QMP and shell
commands the runner sends and die, hang or break where a test says
(FakeLab), so the runner and `rig run` work without QEMU; and run_rig, the
rig's main with its output captured."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rig.builder.artifacts import Artifacts
from rig.cli import main as cli_main
from rig.errors import GuestError, RigError
from rig.execution.scenario_run import AFTER_MARK
from rig.guest.devices import Bench
from rig.guest.kvm import Accel
from rig.guest.ssh import CmdResult
from rig.guest.topology import Topology
from rig.scenarios.kit import Seen

TCG = Accel("tcg", "asked for with --accel tcg")
# Each with a kernel command line of its own, so each is a machine of its own
# (rig.guest.packing): the runner's tests are about guests. P1 and P2 share
# one machine: the packing tests' placements.
A, B, C = (Topology(name=n, append=(f"tphlab.fake={n}",)) for n in ("alpha", "beta", "gamma"))
P1, P2 = Topology(name="pair-one"), Topology(name="pair-two", importer={"ext-tph": "off"})
STEP = '{"step": "get", "ret": 0, "errno": 0}'


@dataclass(frozen=True)
class FakeCase:
    """A scenario whose command the fake guest recognises by its name."""

    name: str
    topo: Topology
    verify: Callable[[Seen], list[str]] = lambda seen: []
    did: str = "ST=0x42 PH=2"
    summary: str = "a fake scenario"
    busy_vcpus: int = 1

    def command(self, bench: Bench) -> str:
        return f"fake-scenario {self.name}"

    def check(self, seen: Seen) -> list[str]:
        return self.verify(seen)

    def describe_set(self) -> str:
        return self.did

    def received(self, seen: Seen) -> str:
        return f"{len(seen.steps)} step(s), {len(seen.records)} record(s)"


def raises_key_error(seen: Seen) -> list[str]:
    return [str(seen.steps[0]["no-such-field"])]


def mismatch(seen: Seen) -> list[str]:
    return ["exporter received ST=0x43, expected ST=0x42"]


@dataclass
class FakeProc:
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class FakeLab:
    """What the fake guests do: by scenario name, "kill" (QEMU dies in it),
    "hang" (the command never ends), "die-after" (QEMU dies right after it),
    "block" (waits until the guest is stopped); by topology name, a boot error."""

    fate: dict[str, str] = field(default_factory=dict)
    boot_error: dict[str, RigError] = field(default_factory=dict)
    guests: list[FakeGuest] = field(default_factory=list)
    started: dict[str, threading.Event] = field(default_factory=dict)
    seconds: float = 0.0        # how long each scenario's command takes
    # (scenario, start, end) of each scenario's command, by time.monotonic()
    ran: list[tuple[str, float, float]] = field(default_factory=list)

    def factory(self, arts: Artifacts, topo: Topology, rundir: Path, accel: str) -> FakeGuest:
        g = FakeGuest(self, topo, rundir, accel, arts)
        self.guests.append(g)
        return g

    def event(self, name: str) -> threading.Event:
        return self.started.setdefault(name, threading.Event())


class FakeShell:
    def __init__(self, guest: FakeGuest) -> None:
        self.guest = guest

    def run(self, command: str, timeout: float = 60.0) -> CmdResult:
        g = self.guest
        if not g.alive():
            raise GuestError(f"guest command {command!r} failed over SSH: EOF")
        if command.startswith(("tphlab-bind", "dmesg")):
            g.commands.append(command.split()[0])
            return CmdResult(0, "", "")
        name = next(seg.split()[1] for seg in command.split(";")
                    if seg.strip().startswith("fake-scenario"))
        g.scenario_commands.append(command)
        g.lab.event(name).set()
        fate = g.lab.fate.get(name)
        if fate == "kill":
            g.proc.returncode = -9
            raise GuestError(f"guest command {command!r} failed over SSH: Socket is closed")
        if fate == "hang":
            raise GuestError(f"guest command {command!r} did not finish in {timeout:.0f} s "
                             "(its SSH channel was closed)")
        if fate == "block":
            g.stopped.wait(10)
            raise GuestError(f"guest command {command!r} failed over SSH: Socket is closed")
        if fate == "die-after":
            g.proc.returncode = -11
        began = time.monotonic()
        time.sleep(g.lab.seconds)
        g.lab.ran.append((name, began, time.monotonic()))
        return CmdResult(0, f'{STEP}\n\n{AFTER_MARK}\n'
                            "tphlab-dmabufs: 0\n", "")


class FakeGuest:
    def __init__(self, lab: FakeLab, topo: Topology, rundir: Path, accel: str,
                 arts: Artifacts) -> None:
        self.lab, self.topo, self.rundir, self.accel = lab, topo, rundir, accel
        self.arts = arts
        rundir.mkdir(parents=True, exist_ok=True)
        self.console = rundir / "console.log"
        self.stage = "qemu"
        self.boot_seconds = 0.0
        self.proc = FakeProc()
        self.shell: FakeShell | None = None
        self.stopped = threading.Event()
        self.qmp_log: list[str] = []
        self.commands: list[str] = []       # the set-up commands its shell ran
        self.scenario_commands: list[str] = []
        self.qmp_paths: list[str] = []      # the QOM paths its QMP commands named
        self.started_from: str | None = None   # "boot" or "snapshot", once up

    # What rig.guest.snapshot and the runner use of a VM to save and restore it:
    # the "snapshot" is a file naming the topology it was saved from.

    def save(self, state: Path, timeout: float = 60.0) -> None:
        if self.lab.fate.get("save") == "fail":
            raise RigError("saving the guest: QEMU's migration failed: no space left")
        state.write_text(f"guest {self.topo.name}\n")

    def restore(self, state: Path, timeout: float = 30.0) -> None:
        if state.read_text() != f"guest {self.topo.name}\n":
            raise RigError("restoring the guest: QEMU's migration failed: "
                           "Unable to read from file")
        self.stage, self.boot_seconds, self.started_from = "ssh", 0.05, "snapshot"
        self.shell = FakeShell(self)

    def start(self, timeout: float = 120.0,
              on_stage: Callable[[str, float], None] | None = None) -> None:
        self.console.write_text("Linux version 7.2.13-tphlab\ntphlab-ready\n")
        err = self.lab.boot_error.get(self.topo.name)
        if err is not None:
            self.stage = "network"
            raise err
        self.stage, self.boot_seconds, self.started_from = "ssh", 0.25, "boot"
        self.shell = FakeShell(self)

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped.set()
        if self.proc.returncode is None:
            self.proc.returncode = 0

    def alive(self) -> bool:
        return self.proc.returncode is None

    def qmp_cmd(self, name: str, **args: Any) -> Any:
        if not self.alive():
            raise GuestError(f"QMP {name}: no answer from QEMU (EOFError)")
        self.qmp_log.append(name)
        if "path" in args:
            self.qmp_paths.append(args["path"])
        if name == "query-pci":
            ids = [q for p in self.topo.pairs() for q in p.qom_ids(self.topo).values()]
            dev = [{"slot": 3 + n, "function": 0, "qdev_id": q} for n, q in enumerate(ids)]
            return [{"bus": 0, "devices": dev}]
        if name == "x-query-tph-hints":
            return {"records": [{"seq": 0, "generation": 1, "requester-id": 0x20,
                                 "offset": 0, "length": 64, "th": True, "ph": 2, "st": 0x42,
                                 "ext": False}], "generation": 2}
        return {}


def fake_arts(tmp_path: Path) -> Artifacts:
    d = tmp_path / "arts"
    return Artifacts(d / "qemu-system-x86_64", d / "share/qboot.rom", d / "share",
                     d / "bzImage", d / "initramfs.cpio.gz", d / "client_key", d / "host_key")


def run_rig(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli_main.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err

