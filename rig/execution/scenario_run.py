"""One scenario in a booted guest: its command with the after-checks (dmesg, live
dma-bufs) in the same shell command, the exporter's hint log read after it,
its check, and the Outcome the reports need."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.errors import GuestError, RigError
from rig.execution.runlog import RunLog
from rig.guest import kernel_log, pci_address
from rig.guest.devices import Bench
from rig.guest.interface import GuestVM
from rig.results.run import Outcome, Status
from rig.scenarios import iommu, selftests, tphctl_output
from rig.scenarios.findings import Finding, Kind, dma, health, kind_of, wire
from rig.scenarios.kit import Scenario, Seen

# After each scenario, in the same command: its dmesg, and how many
# dma-bufs are still alive (every one the scenario made dies with its
# process; one left is a leak), counted with the shell's own `read` (a
# program more per scenario costs ~5 ms under TCG). A kernel message that
# comes after this is charged to the next scenario.
AFTER_MARK = "tphlab-after-scenario"
AFTER = (f"printf '\\n%s\\n' {AFTER_MARK}; dmesg -c; n=; "
         "while read -r w c _; do [ \"$w\" = Total ] && n=$c; done "
         "< /sys/kernel/debug/dma_buf/bufinfo; echo \"tphlab-dmabufs: $n\"")
_DMABUFS = re.compile(r"^tphlab-dmabufs: (\d*)$", re.M)


def split_after(stdout: str) -> tuple[str, str]:
    """A scenario command's output: (the scenario's own, AFTER's).

    AFTER's mark starts on a line of its own even when the scenario's last
    line was cut short. The last mark counts: a scenario may print anything.
    No mark (the guest shell died first): all is the scenario's.
    """
    own, mark, after = stdout.rpartition(f"\n{AFTER_MARK}\n")
    return (own, after) if mark else (stdout, "")


@dataclass(frozen=True)
class AfterChecks:
    """What the AFTER command found: its kernel log, read once, and the failures."""

    dmesg: kernel_log.KernelLog    # the kernel's reports and stall warnings
    failures: list[str]            # each report, and a leaked or uncounted dma-buf


def after_checks(output: str) -> AfterChecks:
    """The kernel reports, stall warnings and failures in the AFTER command's output."""
    dmesg = kernel_log.classify_dmesg(output)
    failures: list[str] = [health(f"dmesg: {ln}") for ln in dmesg.reports]
    m = _DMABUFS.search(output)
    if m is None or not m.group(1):
        failures.append(health("could not count live dma-bufs (is debugfs mounted in the "
                               "guest?)"))
    elif int(m.group(1)):
        failures.append(health(f"{m.group(1)} dma-buf(s) still alive after the scenario: "
                               "a leak"))
    return AfterChecks(dmesg, failures)


def set_text_of(case: Scenario) -> str:
    """The case's "set" text; a scenario whose describe_set breaks says so."""
    try:
        return case.describe_set()
    except Exception as exc:
        return f"(describe_set raised {type(exc).__name__}: {exc})"


def verdict(failures: Sequence[str], reference: bool) -> Status:
    """PASS without failures; DIFFERS when the kernel is not the reference
    series and every failure is of its contract only; else FAIL."""
    if not failures:
        return Status.PASS
    if not reference and all(kind_of(f) is Kind.CONTRACT for f in failures):
        return Status.DIFFERS
    return Status.FAIL


def outcome_of(case: Scenario, status: Status, seconds: float = 0.0,
               failures: Sequence[str] = (), seen: Seen | None = None, received: str = "",
               dmesg: Sequence[str] = (), output: Path | None = None) -> Outcome:
    """A scenario's Outcome: everything the reports need, taken from it now;
    each failure's kind, and for a contract difference both values."""
    seen = seen if seen is not None else Seen([])
    return Outcome(name=case.name, topology=case.topo.name, status=status,
                   seconds=round(seconds, 3), summary=case.summary, set_text=set_text_of(case),
                   received=received, failures=[str(f) for f in failures],
                   kinds=[kind_of(f).value for f in failures],
                   contract=[{"check": str(f), "reference": f.reference, "seen": f.seen}
                             for f in failures
                             if isinstance(f, Finding) and f.kind is Kind.CONTRACT],
                   steps=seen.steps, records=seen.records, dmesg=list(dmesg),
                   output=str(output) if output is not None else None)


def not_run(case: Scenario, why: str) -> Outcome:
    return outcome_of(case, Status.NOT_RUN, failures=[f"not run: {why}"])


def _save_output(outdir: Path, name: str, text: str) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / name).write_text(text)


def run_case(vm: GuestVM, case: Scenario, bench: Bench, timeout: float = 60.0,
             outdir: Path | None = None, log: RunLog | None = None,
             reference: bool = True) -> Outcome:
    """Run one scenario in a booted guest and check it.

    outdir keeps its raw output: tphctl's lines (tphctl.out, stderr.out),
    the exporter's hint log read after it (qmp.json), and what the after-checks read
    (dmesg.out). A check (or its received text) that raises makes the
    scenario an ERROR, its traceback in `log`. Guest and rig errors
    (GuestError, RigError) propagate: the caller knows the guest.
    """
    shell = vm.shell
    assert shell is not None
    started = time.monotonic()
    vm.qmp_cmd("x-tph-hints-clear", path=bench.exporter_path)

    def read_log() -> dict[str, Any]:
        answer: dict[str, Any] = vm.qmp_cmd("x-query-tph-hints", path=bench.exporter_path)
        if outdir is not None:
            _save_output(outdir, "qmp.json", json.dumps(answer["records"], indent=1) + "\n")
        return answer

    # `;` binds loosest: AFTER runs whatever the scenario's command list did.
    # The log is read once the command is done: it survives the reset that
    # releasing the VFIO device does.
    try:
        res = shell.run(f"{placement_env(case, bench)}; {case.command(bench)}; {AFTER}",
                        timeout=guest_timeout(case, timeout))
    except BaseException:
        with contextlib.suppress(Exception):   # keep what reached the device; the error stands
            read_log()
        raise
    lost: list[str] = []
    try:
        answer = read_log()
    except GuestError as exc:
        if vm.alive():
            raise
        # QEMU died after the command: its steps still count (the caller
        # makes this a crash), only the log is gone with it.
        answer, lost = {}, [wire(f"the exporter's hint log could not be read: {exc.message}")]
    records: list[dict[str, Any]] = answer.get("records", [])
    out, after_out = split_after(res.stdout)
    if outdir is not None:
        _save_output(outdir, "tphctl.out", out)
        _save_output(outdir, "stderr.out", res.stderr)
        _save_output(outdir, "dmesg.out", after_out)
    # tphctl's step lines, and those a process killed mid-line left unparsable
    # (the check reads the steps as protocol records: a ProtocolError there).
    steps, garbled = tphctl_output.split(out)
    seen = Seen(steps, records, pci_address.requester_id(bench.importer), out,
                answer.get("dma-errors") or {}, int(answer.get("total", len(records))))
    checked = after_checks(after_out)
    splats = checked.dmesg.reports
    failures = lost + [dma(f"a step's output was cut short: {ln[:200]}") for ln in garbled]
    try:
        failures += case.check(seen)
        received = case.received(seen)
    except Exception as exc:
        where = f"scenario {case.name}: its check raised {type(exc).__name__}: {exc}"
        if log is not None:
            log.exception(where, exc)
        text = (exc.message if isinstance(exc, RigError)
                else f"{type(exc).__name__}: {exc}")
        failures.append(f"internal error: the check raised {text}"
                        + (f" (traceback in {log.path})" if log is not None else ""))
        return outcome_of(case, Status.ERROR, time.monotonic() - started, failures, seen,
                          dmesg=splats, output=outdir)
    if res.stderr.strip():
        failures.append(dma(f"stderr: {res.stderr.strip()}"))
    failures += checked.failures
    done = outcome_of(case, verdict(failures, reference),
                      time.monotonic() - started, failures, seen, received, splats, outdir)
    done.warnings = checked.dmesg.stalls
    done.devices = {d.role.removesuffix(bench.suffix): d.bdf for d in bench.devices()}
    done.path = iommu.p2p_path(case, seen)
    if isinstance(case, selftests.KernelSelftest):
        done.cases, done.ktap = case.rows(seen), out
        done.dma_errors = {k: int(v) for k, v in seen.dma_errors.items()}
    return done


def placement_env(case: Scenario, bench: Bench) -> str:
    """What points tphctl at the scenario's own placement in a machine that may
    hold several: its importer's device node and its way through VFIO."""
    return (f"export TPHLAB_IMPORTER={shlex.quote(bench.importer)} "
            f"TPHLAB_VFIO={shlex.quote(case.topo.vfio)}")


def guest_timeout(case: Scenario, timeout: float) -> float:
    """The seconds a scenario's guest command may take: the run's case timeout,
    or more for a scenario that says it needs more (a kernel selftest)."""
    if isinstance(case, selftests.KernelSelftest):
        return max(timeout, case.guest_timeout)
    return timeout

