"""The whole bench: the patched kernel on the built QEMU, every scenario checked over QMP."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from rig.scenarios import hint_cases, hostile, matrix

from .test_workflow import step_command

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def _check_doc(doc: dict[str, Any], selftests: bool = True) -> None:
    every = matrix.full() if selftests else matrix.without_selftests()
    assert [s["name"] for s in doc["scenarios"]] == [c.name for c in every]
    assert doc["accel"] in ("kvm", "tcg")
    for s in doc["scenarios"]:
        assert s["passed"], s


def _run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str],
                                                dict[str, Any], Path]:
    js, junit = tmp_path / "run.json", tmp_path / "junit.xml"
    res = subprocess.run([sys.executable, "-m", "rig", "run", "--json", str(js), "--junit",
                          str(junit), *extra], cwd=REPO, capture_output=True, text=True,
                         timeout=5400, check=False, env=dict(os.environ))
    print(res.stdout)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-6000:]
    doc: dict[str, Any] = json.loads(js.read_text())
    _check_doc(doc, selftests="-K" not in extra)
    return res, doc, junit


def _workflow_run(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any],
                                           Path]:
    """The workflow's "Run the bench" and "Job summary" steps, exactly as CI runs them."""
    cmd = step_command("Run the bench", accel="tcg")
    res = subprocess.run(["bash", "-c", cmd], cwd=REPO, capture_output=True, text=True,
                         timeout=5400, check=False, env=dict(os.environ))
    print(res.stdout)
    js, junit = tmp_path / "results.json", tmp_path / "results.xml"
    for name, dest in (("results.json", js), ("results.xml", junit)):
        if (REPO / name).exists():
            shutil.move(REPO / name, dest)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-6000:]
    summary = tmp_path / "summary.md"
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    sm = subprocess.run(["bash", "-c", step_command("Job summary")], cwd=tmp_path,
                        capture_output=True, text=True, timeout=120, check=False,
                        env=dict(os.environ, GITHUB_STEP_SUMMARY=str(summary)))
    assert sm.returncode == 0, sm.stderr
    doc: dict[str, Any] = json.loads(js.read_text())
    _check_doc(doc)
    text = summary.read_text()
    assert f"{len(doc['scenarios'])}/{len(doc['scenarios'])} scenarios passed" in text
    assert all(f"| {s['name']} |" in text for s in doc["scenarios"])
    return res, doc, junit


def test_workflow_run_step_passes_every_scenario(tmp_path: Path) -> None:
    res, doc, junit = _workflow_run(tmp_path)
    hint_names = {c.name for c in hint_cases.matrix()}
    by_name = {s["name"]: s for s in doc["scenarios"]}
    for name in hint_names:
        # Every DMA was seen by the exporter, from the importer, as exactly one record.
        assert len(by_name[name]["records"]) == 1, by_name[name]
    hinted = {n: by_name[n]["records"][0] for n in hint_names if by_name[n]["records"][0]["th"]}
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
    # The kernel's VFIO selftests run once, in the workflow's run: under
    # KASAN on TCG the driver test's 1 GiB mapping per case takes too long
    _, doc, _ = _run(tmp_path, "--kernel-config", "debug", "--boot-timeout", "300",
                     "--timeout", "180", "-K", matrix.SELFTESTS)
    assert all(s["dmesg"] == [] for s in doc["scenarios"])
    # ... and the checkers were really on, and had not turned themselves off.
    rig = [sys.executable, "-m", "rig"]
    boot = subprocess.run([*rig, "boot", "--kernel-config", "debug"], cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)
    assert boot.returncode == 0, boot.stderr[-3000:]
    try:
        probe = subprocess.run(
            [*rig, "ssh", "dmesg | grep -cE 'KernelAddressSanitizer initialized|Lock "
             "dependency validator'; grep debug_locks /proc/lockdep_stats"],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    finally:
        subprocess.run([*rig, "stop"], cwd=REPO, capture_output=True, timeout=120, check=False)
    assert probe[:3] == ["2", "debug_locks:", "1"], probe
