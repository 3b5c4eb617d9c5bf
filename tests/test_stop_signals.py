"""SIGTERM and SIGHUP stop the rig as Ctrl-C does, and SIGKILL leaves no QEMU behind.

The unit tests check the pieces (the handler, the run's exit code and
report, the parent-death signal of a spawned process); the integration
tests stop a real `rig run` mid-matrix as CI cancelling a job would.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rig import stopsignals
from rig.results import report
from rig.results.run import Outcome, Run, Status

REPO = Path(__file__).resolve().parent.parent


# --- the handler --------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_is_a_keyboard_interrupt_with_its_number(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)     # SIG_IGN for SIGHUP under nohup
    with pytest.raises(KeyboardInterrupt) as info, stopsignals.handle():
        os.kill(os.getpid(), sig)
        time.sleep(5)          # the handler raises long before this ends
    assert isinstance(info.value, stopsignals.Stopped)
    assert stopsignals.signum_of(info.value) == sig
    assert signal.getsignal(sig) == before     # put back as it was


def test_exit_codes_and_words_follow_the_signal() -> None:
    assert stopsignals.exit_code(stopsignals.signum_of(KeyboardInterrupt())) == 130
    assert stopsignals.exit_code(signal.SIGTERM) == 143
    assert stopsignals.exit_code(signal.SIGHUP) == 129
    assert stopsignals.describe(signal.SIGINT) == "interrupted"
    assert stopsignals.describe(signal.SIGTERM) == "interrupted by SIGTERM"


def _run(status: Status) -> Run:
    return Run("tcg", [Outcome("a", "default", status)])


def test_a_run_stopped_by_sigterm_says_so_and_exits_143() -> None:
    run = _run(Status.NOT_RUN)
    run.interrupt(stopsignals.Stopped(signal.SIGTERM))
    assert run.exit_code == 143
    doc = run.to_dict()
    assert doc["interrupted"] is True and doc["signal"] == "SIGTERM"
    again = Run.from_json(run.to_json())
    assert again.exit_code == 143 and again.interruption == "interrupted by SIGTERM"
    assert "; interrupted by SIGTERM" in report.table(again)
    assert "# tphlab interrupted by SIGTERM" in report.to_ktap(again)


def test_a_run_saved_before_the_signal_was_recorded_reads_as_ctrl_c() -> None:
    run = _run(Status.NOT_RUN)
    run.interrupt(KeyboardInterrupt())
    doc = run.to_dict()
    del doc["signal"]
    again = Run.from_dict(doc)
    assert again.exit_code == 130 and again.interruption == "interrupted"


def test_a_run_that_was_not_interrupted_has_no_signal_in_its_json() -> None:
    assert "signal" not in _run(Status.PASS).to_dict()


# --- the parent-death signal ----------------------------------------------------------------

SPAWNER = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from rig.guest.qemu import QemuProcess
    out = Path(sys.argv[1])
    procs = []
    def start(outlive):
        procs.append(QemuProcess.spawn(["sleep", "300"], out / f"log{len(procs)}",
                                       outlive_rig=outlive))
    for outlive in (False, True):
        t = threading.Thread(target=start, args=(outlive,))
        t.start()
        t.join()            # the thread that asked for it is gone
    print(" ".join(str(p.pid) for p in procs), flush=True)
    time.sleep(300)
""")


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_sigkill_of_the_rig_kills_its_qemu_but_not_one_that_outlives_it(
        tmp_path: Path) -> None:
    rig = subprocess.Popen([sys.executable, "-c", SPAWNER, str(tmp_path)], cwd=REPO,
                           stdout=subprocess.PIPE, text=True)
    assert rig.stdout is not None
    pids: list[int] = []
    try:
        pids = [int(p) for p in rig.stdout.readline().split()]
        dies, outlives = pids
        # Alive after the thread that started it ended: the launcher thread forked it.
        assert not _gone(dies, 0.5)
        rig.kill()
        rig.wait(10)
        assert _gone(dies, 5), "the QEMU outlived the rig's SIGKILL"
        assert not _gone(outlives, 0.5), "outlive_rig=True was killed with the rig"
    finally:
        rig.kill()
        rig.wait(10)
        for pid in pids:
            _kill_group(pid)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# --- a real `rig run`, stopped mid-matrix --------------------------------------------------

def _qemus_under(rundir: Path) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if str(rundir) in cmd and "qemu-system" in cmd and state not in ("Z", "X"):
            pids.append(int(d.name))
    return pids


def _start_run(json_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """`rig run` of the whole matrix, once a guest is up and a scenario has a
    verdict: the process and its run directory."""
    rig = subprocess.Popen([sys.executable, "-m", "rig", "run", "--no-snapshot",
                            "--json", str(json_path)], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    assert rig.stderr is not None
    rundir: Path | None = None
    deadline = time.monotonic() + 1800        # a cold build may come first
    for line in rig.stderr:
        if time.monotonic() > deadline:
            break
        m = re.search(r"\(logs: (\S+)\)", line)
        if m:
            rundir = Path(m.group(1))
        if rundir is not None and re.search(r"\b(PASS|FAIL) \S+ \(", line):
            break
    assert rundir is not None, "rig run never started its scenarios"
    assert _qemus_under(rundir), "no guest was running when the signal was sent"
    return rig, rundir


@pytest.mark.integration
def test_sigterm_mid_matrix_stops_every_guest_and_writes_the_report(tmp_path: Path) -> None:
    js = tmp_path / "run.json"
    rig, rundir = _start_run(js)
    try:
        rig.send_signal(signal.SIGTERM)
        _, err = rig.communicate(timeout=90)
    finally:
        rig.kill()
    assert rig.returncode == 143, err[-2000:]
    assert "interrupted by SIGTERM" in err
    assert _qemus_under(rundir) == [], "a guest was left running after SIGTERM"
    for path in (js, rundir / "run.json"):
        run = Run.from_json(path.read_text())
        assert run.interrupted and run.interruption == "interrupted by SIGTERM"
        assert run.count(Status.PASS) >= 1, "the verdicts obtained before it were lost"
        assert run.count(Status.NOT_RUN) >= 1
    assert (rundir / "junit.xml").exists() and (rundir / "run.ktap").exists()


@pytest.mark.integration
def test_sigkill_mid_matrix_leaves_no_qemu(tmp_path: Path) -> None:
    rig, rundir = _start_run(tmp_path / "run.json")
    try:
        rig.kill()
        rig.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while _qemus_under(rundir) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _qemus_under(rundir)
    finally:
        for pid in _qemus_under(rundir):
            _kill_group(pid)
    assert left == [], "QEMU outlived a SIGKILLed rig"
