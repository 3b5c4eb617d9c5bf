"""The whole bench: the patched kernel on the built QEMU, every scenario checked over QMP."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from rig import hostile, matrix, scenarios

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def _run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str],
                                                dict[str, Any], Path]:
    js, junit = tmp_path / "run.json", tmp_path / "junit.xml"
    res = subprocess.run([sys.executable, "-m", "rig", "run", "--json", str(js), "--junit",
                          str(junit), *extra], cwd=REPO, capture_output=True, text=True,
                         timeout=5400, check=False, env=dict(os.environ))
    print(res.stdout)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-6000:]
    doc: dict[str, Any] = json.loads(js.read_text())
    assert [s["name"] for s in doc["scenarios"]] == [c.name for c in matrix.full()]
    assert doc["accel"] in ("kvm", "tcg")
    for s in doc["scenarios"]:
        assert s["passed"], s
    return res, doc, junit


def test_rig_run_passes_every_scenario(tmp_path: Path) -> None:
    res, doc, junit = _run(tmp_path)
    hint_cases = {c.name for c in scenarios.matrix()}
    by_name = {s["name"]: s for s in doc["scenarios"]}
    for name in hint_cases:
        # Every DMA was seen by the exporter, from the importer, as exactly one record.
        assert len(by_name[name]["records"]) == 1, by_name[name]
    hinted = {n: by_name[n]["records"][0] for n in hint_cases if by_name[n]["records"][0]["th"]}
    assert hinted["ext-st"]["st"] == 0xBEEF and hinted["ext-st"]["ext"]
    assert {hinted[f"st8-ph{p}"]["ph"] for p in range(4)} == {0, 1, 2, 3}
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert "scenarios passed" in res.stdout
    # Each hostile input is its own row, with the errno it expects and the one it got.
    for h in hostile.cases():
        row = by_name[h.name]
        assert row["set"].endswith(f"(expect {errno.errorcode[h.errno]})"), row
        assert row["received"] == f"got {errno.errorcode[h.errno]}", row
    assert "race-set-vs-query-ext" in by_name and "revoke-decode" in by_name


def test_debug_kernel_passes_every_scenario_without_a_report(tmp_path: Path) -> None:
    """Lockdep, KASAN, DEBUG_LIST and DEBUG_ATOMIC_SLEEP find nothing in the whole matrix.

    The runner fails any scenario after which dmesg holds a report, so a pass
    here means none appeared.
    """
    _, doc, _ = _run(tmp_path, "--kernel-config", "debug", "--boot-timeout", "300",
                     "--timeout", "180")
    assert all(s["dmesg"] == [] for s in doc["scenarios"])
