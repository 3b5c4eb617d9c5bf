"""The whole bench: the patched kernel on the built QEMU, every scenario checked over QMP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rig import scenarios

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_rig_run_passes_every_scenario(tmp_path: Path) -> None:
    js, junit = tmp_path / "run.json", tmp_path / "junit.xml"
    res = subprocess.run([sys.executable, "-m", "rig", "run", "--json", str(js), "--junit",
                          str(junit)], cwd=REPO, capture_output=True, text=True, timeout=5400,
                         check=False, env=dict(os.environ))
    print(res.stdout)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-6000:]
    doc = json.loads(js.read_text())
    names = [s["name"] for s in doc["scenarios"]]
    assert names == [c.name for c in scenarios.matrix()]
    assert doc["accel"] in ("kvm", "tcg")
    for s in doc["scenarios"]:
        assert s["passed"], s
        # Every DMA was seen by the exporter, from the importer, as exactly one record.
        assert len(s["records"]) == 1, s
    hinted = {s["name"]: s["records"][0] for s in doc["scenarios"] if s["records"][0]["th"]}
    assert hinted["ext-st"]["st"] == 0xBEEF and hinted["ext-st"]["ext"]
    assert {hinted[f"st8-ph{p}"]["ph"] for p in range(4)} == {0, 1, 2, 3}
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert "scenarios passed" in res.stdout
