"""Under load: several `rig run` at once on one machine all give true verdicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import pytest

from rig.scenarios import matrix

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration

# What the runs at once run: the matrix without the IOMMU topologies but one.
# These tests are about sharing the machine (the vCPU budget, stalls, a WARN
# under load), which needs many guests, not every topology seven times over;
# the IOMMU topologies run whole in the e2e, user-tree, mails and snapshot
# tests. iommu-identity stays, so the taint check runs under load too.
LOADED = [c.name for c in matrix.full() if not c.topo.iommu or c.topo.name == "iommu-identity"]
PICK = [a for name in LOADED for a in ("-k", name)]


def test_three_runs_at_once_all_pass(tmp_path: Path) -> None:
    def argv(i: int) -> list[str]:
        return [sys.executable, "-m", "rig", "run", "--json", str(tmp_path / f"run{i}.json"),
                *PICK]

    started = time.monotonic()
    alone = subprocess.run(argv(9), cwd=REPO, capture_output=True, text=True, timeout=3600,
                           check=False, env=dict(os.environ))
    one = time.monotonic() - started
    assert alone.returncode == 0, alone.stderr[-3000:]
    started = time.monotonic()
    procs = [subprocess.Popen(argv(i), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ)) for i in range(3)]
    outs = [p.communicate(timeout=3600) for p in procs]
    together = time.monotonic() - started
    print(f"one run {one:.1f} s; three at once {together:.1f} s ({together / one:.2f}x)")
    for i, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, f"run {i}: {out[-3000:]}{err[-3000:]}"
        doc = json.loads((tmp_path / f"run{i}.json").read_text())
        assert [s["name"] for s in doc["scenarios"]] == LOADED
        assert all(s["status"] == "PASS" for s in doc["scenarios"])
    # At least one of them had to wait for the machine's vCPU budget.
    assert any("vCPU slot" in err for _, err in outs)


def test_a_warn_still_fails_its_run_under_load(tmp_path: Path) -> None:
    """Two runs and one whose importer WARNs, at once: the WARN fails the scenario
    that sees it in each of that run's guests (exit 1, every result kept), while
    stall reports of the loaded machine stay warnings and the others pass."""
    def argv(i: int, *extra: str) -> list[str]:
        return [sys.executable, "-m", "rig", "run", "--json", str(tmp_path / f"run{i}.json"),
                *PICK, *extra]

    procs = [subprocess.Popen(a, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ))
             for a in (argv(0), argv(1, "--inject", "warn"), argv(2))]
    outs = [p.communicate(timeout=3600) for p in procs]
    for i in (0, 2):
        assert procs[i].returncode == 0, f"run {i}: {outs[i][0][-3000:]}{outs[i][1][-3000:]}"
    assert procs[1].returncode == 1, outs[1][0][-3000:] + outs[1][1][-3000:]
    doc = json.loads((tmp_path / "run1.json").read_text())
    scenarios = doc["scenarios"]
    assert len(scenarios) == len(LOADED), "a result was lost"
    # The fault is injected once per guest, and a packed guest holds several
    # topologies: the first scenario of each guest meets it
    assert {s["guest"] for s in scenarios} == set(doc["boots"])
    firsts: dict[str, dict[str, object]] = {}
    for s in scenarios:
        firsts.setdefault(s["guest"], s)
    for guest, s in firsts.items():
        assert s["status"] == "FAIL", (guest, s["name"], s["status"], s["failures"])
        dmesg = cast(list[str], s["dmesg"])
        assert any("WARNING:" in d and "tph_importer.c" in d for d in dmesg), (
            guest, dmesg)
    # Only the scenario that saw the WARN fails, and on the IOMMU topologies the
    # taint check, which finds the WARN's taint (W); the rest of each guest passes
    failed = {s["name"] for s in scenarios if s["status"] != "PASS"}
    tainted = {s["name"] for s in scenarios if s["name"].endswith("-no-taint")}
    assert tainted and failed == {s["name"] for s in firsts.values()} | tainted
    for s in scenarios:
        if s["name"] in tainted:
            failures = cast(list[str], s["failures"])
            assert any("W (bit 9)" in f for f in failures), failures
