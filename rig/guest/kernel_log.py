"""The guest kernel's log (dmesg), read: the reports that fail a scenario, and the
stall warnings that under TCG only say the host was slow."""

from __future__ import annotations

import re
from typing import NamedTuple

# Reports of the kernel's checkers. Informational lines that merely name a
# checker ("RCU lockdep checking is enabled.") are not reports.
SPLAT = re.compile(r"(WARNING:|BUG:|BUG |kernel BUG|Oops|general protection|"
                   r"possible circular locking|possible recursive locking|"
                   r"inconsistent lock state|suspicious RCU usage|DEBUG_LOCKS_WARN_ON|"
                   r"trying to register non-static key|KASAN:|UBSAN:|"
                   r"list_add corruption|list_del corruption|"
                   r"sleeping function called from invalid context|Call Trace:)")


# Stall reports: under TCG they come from the host being slow (other guests,
# builds), not from the code under test. A report and the register and stack
# dump that follows it are warnings; a real hang is caught by the scenario's
# wall-clock timeout instead.
STALL = re.compile(r"(rcu: INFO: \S+ (self-)?detected stalls?|rcu: \S+ self-detected stall|"
                   r"rcu_\w+ kthread (timer wakeup didn't happen|starved)|"
                   r"INFO: rcu_\w+ (self-)?detected stall|"
                   r"watchdog: BUG: soft lockup|INFO: task \S+ blocked for more than)")
# dmesg's "[   12.345678] " time stamp.
_STAMP = re.compile(r"^\[\s*\d+\.\d+\] ?")
# What a stall report's dump holds besides its first line.
_DUMP = re.compile(r"(Call Trace:|^\s|^\S+: |NMI backtrace|Sending NMI|CPU: \d|Hardware name:|"
                   r"RIP:|Code:|RSP:|RAX:|RDX:|RBP:|R\d+:|FS:|CS:|CR2:|DR\d:|PKRU:|"
                   r"<TASK>|</TASK>|<IRQ>|</IRQ>|Modules linked in:|task:|rcu:|\(detected by|"
                   r"Task dump|Workqueue:|irq event stamp|hardirqs|softirqs)")


class KernelLog(NamedTuple):
    """Kernel log lines, sorted: those that fail a scenario, and the warnings."""

    reports: list[str]     # WARNING, BUG, lockdep, KASAN, ...: each fails the scenario
    stalls: list[str]      # stall reports and their dumps: a warning, never a verdict


def classify_dmesg(text: str) -> KernelLog:
    """(reports that fail a scenario, stall warnings) among the lines of `text`.

    A line that opens a real report (WARNING, BUG, lockdep, KASAN, ...) is one
    even inside a stall's dump; a stall's own "BUG: soft lockup" is not.
    """
    splats: list[str] = []
    warnings: list[str] = []
    in_stall = False
    for raw in text.splitlines():
        ln = _STAMP.sub("", raw)
        if STALL.search(ln):
            warnings.append(raw)
            in_stall = True
        elif in_stall and (not SPLAT.search(ln) or "Call Trace:" in ln) and (
                not ln.strip() or _DUMP.search(ln)):
            warnings.append(raw)
        elif SPLAT.search(ln):
            splats.append(raw)
            in_stall = False
        else:
            in_stall = False
    return KernelLog(splats, [w for w in warnings if w.strip()])


def dmesg_splats(text: str) -> list[str]:
    """The lines of kernel reports in `text` that fail a scenario (stalls do not)."""
    return classify_dmesg(text).reports
