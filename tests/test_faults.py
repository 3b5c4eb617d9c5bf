"""The rig under faults: a crashed, killed, unreachable or hung guest ends the run cleanly.

Each run must stop within its timeouts with exit code 3, print the console
log's path and last lines, keep the logs, and leave no QEMU or port behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration

# fault -> (extra rig arguments, what the error must say, seconds the run may take)
FAULTS = {
    "panic": ((), "the guest kernel panicked", 90),
    "kill-qemu": ((), "QEMU exited with status -9", 90),
    "ssh-refused": (("--boot-timeout", "20"), "SSH to the guest", 90),
    "hang": (("--timeout", "10"), "the guest stopped answering", 90),
}


def _qemu_pids_under(rundir: Path) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(rundir) in cmd and "qemu-system" in cmd:
            pids.append(int(d.name))
    return pids


def _listening(port: int) -> bool:
    """Is anything listening on 127.0.0.1:port? (A closed listener's connections may
    linger in TIME_WAIT; that is the kernel's, not a leak.)"""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return True
    return False


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_ends_the_run_cleanly(fault: str) -> None:
    extra, says, limit = FAULTS[fault]
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "rig", "run", "-k", "no-tph", "--inject", fault,
                          *extra], cwd=REPO, capture_output=True, text=True, timeout=limit * 2,
                         check=False, env=dict(os.environ))
    took = time.monotonic() - started
    err = res.stderr
    assert res.returncode == 3, res.stdout[-3000:] + err[-3000:]
    assert took < limit, f"{fault}: the run took {took:.0f} s"
    assert says in err, err
    m = re.search(r"console (\S+console\.log)", err)
    assert m, err
    console = Path(m.group(1))
    assert console.is_file(), "the console log was not kept"
    assert "    | " in err, "the console's last lines were not printed"
    rundir = console.parent
    assert _qemu_pids_under(rundir) == [], "QEMU was not reaped"
    for cmdline in rundir.rglob("cmdline"):
        for port in re.findall(r"hostfwd=tcp:127\.0\.0\.1:(\d+)-", cmdline.read_text()):
            assert not _listening(int(port)), f"port {port} is still open"
