"""Packing changes no verdict: the matrix packed into few guests and unpacked,
a guest per topology, on the real QEMU, kernel and image; and a fault in a
packed guest is charged to the scenario that met it, and to no other."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rig.execution import runner
from rig.guest import pci_address
from rig.scenarios import matrix

from .test_snapshot_e2e import TIMED, TIMED_FIELDS

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration
# Bus and physical addresses move with the machine's layout, as BDFs do (the
# IOMMU scenarios' own checks judge what kind of address the importer got)
ADDRESS_FIELDS = {"dma_addr", "phys"}


def _rig_run(tmp_path: Path, name: str, *extra: str) -> tuple[int, str, dict[str, Any]]:
    js = tmp_path / f"{name}.json"
    res = subprocess.run([sys.executable, "-m", "rig", "run", "--json", str(js), *extra],
                         cwd=REPO, capture_output=True, text=True, timeout=1800, check=False,
                         env=dict(os.environ))
    assert js.is_file(), res.stdout[-6000:] + res.stderr[-6000:]
    doc: dict[str, Any] = json.loads(js.read_text())
    return res.returncode, res.stdout + res.stderr, doc


def _group_relation(step: dict[str, Any]) -> dict[str, Any]:
    """IOMMU group numbers count the machine's devices: what a step about the
    exporter's and importer's groups says is whether they share one."""
    if isinstance(step.get("exporter"), int) and isinstance(step.get("importer"), int):
        shared = step.pop("exporter") == step.pop("importer")
        step["same_group"] = shared
    return step


def _by_role(scenario: dict[str, Any]) -> dict[str, Any]:
    """A scenario's steps and records with its devices' addresses and requester
    IDs named by role: what stays the same when a packed guest moves them."""
    devices: dict[str, str] = scenario["devices"]
    rids = {pci_address.requester_id(bdf): role for role, bdf in devices.items()}
    records = [{**{k: v for k, v in r.items() if k != "seq"},
                "requester-id": rids.get(r["requester-id"], r["requester-id"])}
               for r in scenario["records"]]
    steps = [_group_relation({k: v for k, v in s.items() if k not in TIMED_FIELDS | ADDRESS_FIELDS})
             for s in scenario["steps"]]
    received = re.sub(r"BAR 0x[0-9a-f]+", "BAR <address>", scenario["received"])
    text = json.dumps({"steps": steps, "received": received}, sort_keys=True)
    for role, bdf in devices.items():
        text = text.replace(bdf, f"<{role}>").replace(bdf.removeprefix("0000:"), f"<{role}>")
    return {**json.loads(text), "records": records}


def test_packed_and_unpacked_guests_give_the_same_verdicts_and_records(
        tmp_path: Path) -> None:
    """The whole matrix but the kernel's selftests (minutes under TCG; the
    workflow's run has them, packed): statuses, failures and kernel reports
    equal, and every record and step equal once devices are named by role."""
    tph = ("-K", matrix.SELFTESTS)
    cases = matrix.without_selftests()
    rc, out, packed = _rig_run(tmp_path, "packed", *tph)
    assert rc == 0, out[-6000:]
    rc, out, alone = _rig_run(tmp_path, "unpacked", "--unpacked", *tph)
    assert rc == 0, out[-6000:]
    assert set(packed["boots"]) == {m.name for m, _ in runner.groups(cases)}
    assert set(alone["boots"]) == {m.name for m, _ in runner.groups(cases, pack=False)}
    assert len(packed["boots"]) < len(alone["boots"])
    by_name = {s["name"]: s for s in alone["scenarios"]}
    assert [s["name"] for s in packed["scenarios"]] == [c.name for c in cases]
    for p in packed["scenarios"]:
        u = by_name[p["name"]]
        assert p["guest"] in packed["boots"] and u["guest"] == u["topology"], p["name"]
        assert (p["status"], p["topology"], p["failures"], p["dmesg"]) == (
            u["status"], u["topology"], u["failures"], u["dmesg"]), p["name"]
        mine, theirs = _by_role(p), _by_role(u)
        if p["name"] in TIMED:      # how far a DMA got before its revocation is timing
            assert {json.dumps(r, sort_keys=True) for r in mine["records"]} == {
                json.dumps(r, sort_keys=True) for r in theirs["records"]}, p["name"]
            continue
        assert mine == theirs, p["name"]


# Three placements of the plain machine: a warning raised right before the
# second placement's first scenario must fail that scenario alone
SPLAT_CASES = ("no-tph", "st8-ph0", "rp-no-completer", "ext-without-ext-completer")


def test_a_warning_in_a_packed_guest_fails_only_the_scenario_that_met_it(
        tmp_path: Path) -> None:
    picks = [a for n in SPLAT_CASES for a in ("-k", n)]
    cases = [c for c in matrix.full() if c.name in SPLAT_CASES]
    assert len(runner.groups(cases)) == 1, "the scenarios must share one guest"
    target = next(c for c in cases if c.name == "st8-ph0").topo.name
    rc, out, doc = _rig_run(tmp_path, "warn", *picks, "--inject", "warn",
                            "--inject-into", target)
    assert rc == 1, out[-4000:]
    status = {s["name"]: s["status"] for s in doc["scenarios"]}
    assert status == {n: "FAIL" if n == "st8-ph0" else "PASS" for n in SPLAT_CASES}, status
    failed = next(s for s in doc["scenarios"] if s["name"] == "st8-ph0")
    assert any(d.startswith("WARNING: tph_importer.c") for d in failed["dmesg"]), failed["dmesg"]
    assert set(failed["kinds"]) == {"health"}


def test_a_killed_packed_guest_marks_only_its_own_scenarios(tmp_path: Path) -> None:
    """QEMU of the plain machine killed right before one placement's first
    scenario: the scenario before it passed, that one crashed, the machine's
    others never ran, and the guest with pci=notph passed all of its own."""
    names = ("no-tph", "st8-ph0", "rp-no-completer", "pci-notph")
    cases = [c for c in matrix.full() if c.name in names]
    assert len(runner.groups(cases)) == 2
    rc, out, doc = _rig_run(tmp_path, "kill", *[a for n in names for a in ("-k", n)],
                            "--inject", "kill-qemu", "--inject-into", "importer-8bit")
    assert rc == 3, out[-4000:]
    status = {s["name"]: s["status"] for s in doc["scenarios"]}
    assert status == {"no-tph": "PASS", "st8-ph0": "CRASHED", "rp-no-completer": "NOT_RUN",
                      "pci-notph": "PASS"}, status
