"""README's "By hand" session through the CLI, on the real guest: `rig boot`,
`rig ssh 'tphctl open exporter ...'`, `rig hints --json` once tphctl has
exited, `rig stop`; then the same on `rig boot --topology rp-no-completer`,
where the DMA arrives without a hint."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rig.guest import topology

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def _readme_command() -> str:
    """The tphctl line of README's session, exactly as written there."""
    m = re.search(r"^\$ rig ssh '(tphctl open exporter [^']*)'$",
                  (REPO / "README.md").read_text(), re.M)
    assert m, "README's By hand section has no `rig ssh 'tphctl ...'` line"
    return m.group(1)


def rig(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "rig", *args], cwd=REPO, capture_output=True,
                         text=True, timeout=timeout, check=False, env=dict(os.environ))
    print(f"$ rig {' '.join(args)}\n{res.stdout}{res.stderr}")
    return res


@pytest.fixture
def no_guest_left() -> Iterator[None]:
    """Whatever the test does, no `rig boot` guest outlives it."""
    yield
    rig("stop", timeout=60)


def _requester_id(bdf: str) -> int:
    rid = topology.Device("importer", "tphimp", bdf).requester_id
    assert rid is not None, bdf
    return rid


def _by_hand(topo: str | None) -> tuple[dict[str, str], list[dict[str, Any]], list[dict[str, Any]],
                                        str]:
    """Boot, run README's tphctl line, read the hints: (BDF by role, tphctl's steps,
    the exporter's records, `rig hints`' table), then stop."""
    boot = rig("boot", *(["--topology", topo] if topo else []), timeout=3600)
    assert boot.returncode == 0, boot.stderr[-4000:]
    bdfs = dict(re.findall(r"^  (exporter|importer|spare): +(\S+)  QOM ", boot.stdout, re.M))
    assert {"exporter", "importer"} <= bdfs.keys(), boot.stdout
    assert f"topology {topo or 'default'}" in boot.stdout
    # The guest lists the devices by role as `rig boot` printed them.
    cat = rig("ssh", "cat", topology.DEVICES_FILE)
    assert cat.returncode == 0, cat.stderr
    assert {d.role: d.bdf for d in topology.parse_devices(cat.stdout)} == bdfs
    ssh = rig("ssh", _readme_command(), timeout=300)
    steps = [json.loads(ln) for ln in ssh.stdout.splitlines() if ln.startswith("{")]
    assert ssh.returncode == 0 and ssh.stderr == "", ssh.stdout + ssh.stderr
    assert [s["step"] for s in steps] == ["open", "get", "set", "attach", "dma", "detach"]
    assert steps[0]["bdf"] == bdfs["exporter"]
    assert all(s["ret"] == 0 for s in steps), steps
    # tphctl has exited (its VFIO device released): the log is read now.
    hints = rig("hints", "--json")
    assert hints.returncode == 0, hints.stderr
    records: list[dict[str, Any]] = json.loads(hints.stdout)["records"]
    table = rig("hints")
    assert table.returncode == 0, table.stderr
    stop = rig("stop", timeout=60)
    assert stop.returncode == 0, stop.stderr
    return bdfs, steps, records, table.stdout


def test_the_readme_session_shows_the_hinted_dma(no_guest_left: None) -> None:
    bdfs, steps, records, table = _by_hand(None)
    assert "spare" in bdfs
    attach = steps[3]
    assert (attach["tph_ret"], attach["st"], attach["ph"], attach["ext"]) == (0, 0xBEEF, 1, 1)
    assert len(records) == 1, records
    r = records[0]
    assert (r["th"], r["ph"], r["st"], r["ext"], r["length"], r["offset"]) == (
        True, 1, 0xBEEF, True, 128, 0)
    assert r["requester-id"] == _requester_id(bdfs["importer"])
    line = next(ln for ln in table.splitlines() if "TH=" in ln)
    # seq, the exporter's reset generation (open and release reset it), the record
    assert line.split()[:2] == ["0", str(r["generation"])] and r["generation"] >= 1
    assert r["direction"] == "write"
    assert line.split()[2:] == [bdfs["importer"][5:], "importer", "0x0", "128", "write",
                                "TH=1", "PH=1", "ST=0xbeef", "ext"]
    assert "total 1, dropped 0" in table


def test_the_same_session_without_a_root_port_completer_has_no_hint(
        no_guest_left: None) -> None:
    bdfs, steps, records, table = _by_hand("rp-no-completer")
    assert "spare" not in bdfs
    assert steps[2]["ret"] == 0                      # the SET itself is accepted
    assert steps[3]["tph_ret"] == -22                # the importer cannot enable TPH
    assert steps[4]["th"] == 0
    assert len(records) == 1, records
    r = records[0]
    assert (r["th"], r["ph"], r["st"], r["ext"], r["length"]) == (False, 0, 0, False, 128)
    assert r["requester-id"] == _requester_id(bdfs["importer"])
    assert "TH=0" in table
