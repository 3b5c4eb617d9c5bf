"""What `rig run` is asked to do, typed: built once from the command line (in
rig.cli.run, the one place that reads its arguments) and carried to the
runner (runner.Options.of) and the report writers, as the build's
rig.builder.artifacts.Request is to the builds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Reports:
    """What a run prints and writes besides its run directory's copies."""

    json: Path | None = None       # --json FILE
    junit: Path | None = None      # --junit FILE
    ktap: bool = False             # --ktap: KTAP on stdout instead of the table
    keep_logs: bool = False        # --keep: the run directory even if all passed


@dataclass(frozen=True)
class RunRequest:
    """A run of the scenario matrix: which scenarios, how, and its reports."""

    patterns: tuple[str, ...] = ()     # -k: only the scenarios they match
    excluded: tuple[str, ...] = ()     # -K: not the scenarios they match
    st: int | None = None              # --st, --ph: one more scenario, with this ST and PH
    ph: int | None = None
    accel: str = "auto"                # --accel auto|kvm|tcg
    boot_timeout: float = 120.0        # --boot-timeout: seconds from QEMU's start to SSH
    case_timeout: float = 60.0         # --timeout: seconds for one scenario's guest command
    fault: str | None = None           # --inject (rig.guest.faults.FAULTS)
    fault_into: str | None = None      # --inject-into: only the guest holding this topology
    pack: bool = True                  # not --unpacked: topologies share guests
    keep_guest: bool = False           # --keep-guest
    snapshots: bool = True             # restore and save guests (not --no-snapshot)
    reports: Reports = field(default_factory=Reports)
