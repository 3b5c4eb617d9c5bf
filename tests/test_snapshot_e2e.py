"""Restored guests give the verdicts booted ones give, and a snapshot that does
not restore falls back to a boot: the real QEMU, kernel and image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rig.guest import snapshot
from rig.scenarios import matrix

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration

# Step fields that measure time, and scenarios whose output counts what fit in
# a time window (a race's answers, the DMAs done before a revoke): in these
# two guests may differ whether booted or restored. Their verdicts, and the
# distinct records the exporter saw, must still be the same.
TIMED_FIELDS = {"ms", "done", "observed"}
# How far a long DMA gets before its revocation is timing, restored or booted
TIMED = {"revoke-during-long-dma", "rootports-revoke-during-long-dma",
         "revoke-during-long-read", "rootports-revoke-during-long-read",
         "race-set-vs-query-ext", "race-set-vs-query-8bit"}


def _rig_run(tmp_path: Path, name: str, *extra: str) -> tuple[str, dict[str, Any]]:
    js = tmp_path / f"{name}.json"
    res = subprocess.run([sys.executable, "-m", "rig", "run", "--json", str(js), *extra],
                         cwd=REPO, capture_output=True, text=True, timeout=1800, check=False,
                         env=dict(os.environ))
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-6000:]
    doc: dict[str, Any] = json.loads(js.read_text())
    return res.stdout + res.stderr, doc


def _steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k not in TIMED_FIELDS} for s in steps]


def _distinct(records: list[dict[str, Any]]) -> list[str]:
    return sorted({json.dumps({k: v for k, v in r.items() if k != "seq"}, sort_keys=True)
                   for r in records})


def test_a_restored_guest_gives_every_verdict_and_record_a_boot_gives(tmp_path: Path) -> None:
    # Without the kernel's VFIO selftests (minutes under TCG; they run in
    # the workflow's run), on every topology: the selftests' is there too
    tph = ("-K", matrix.SELFTESTS)
    _, booted = _rig_run(tmp_path, "boot", "--no-snapshot", *tph)
    assert set(booted["started"].values()) == {"boot"}
    _rig_run(tmp_path, "save", *tph)                  # saves what is not saved yet
    _, restored = _rig_run(tmp_path, "restore", *tph)
    assert set(restored["started"].values()) == {"snapshot"}, restored["started"]
    assert restored["started"].keys() == booted["started"].keys()
    by_name = {s["name"]: s for s in restored["scenarios"]}
    assert [s["name"] for s in booted["scenarios"]] == [c.name for c in
                                                        matrix.without_selftests()]
    for b in booted["scenarios"]:
        r = by_name[b["name"]]
        assert (r["status"], r["failures"], r["dmesg"]) == (b["status"], b["failures"],
                                                             b["dmesg"]), b["name"]
        assert _distinct(r["records"]) == _distinct(b["records"]), b["name"]
        if b["name"] in TIMED:
            continue
        assert r["records"] == b["records"], b["name"]       # every field, every record
        assert _steps(r["steps"]) == _steps(b["steps"]), b["name"]
        assert r["received"] == b["received"], b["name"]


def _default_snapshot() -> Path:
    found = [d for d in snapshot.Store().root.iterdir()
             if (d / "meta.json").is_file()
             and json.loads((d / "meta.json").read_text())["inputs"]["topology"] == "default"]
    assert found, "no snapshot of the default topology's guest"
    return max(found, key=lambda d: d.stat().st_mtime)


@pytest.mark.parametrize("damage", ["truncated", "garbage header"])
def test_a_corrupted_snapshot_is_deleted_and_the_guest_boots(tmp_path: Path,
                                                            damage: str) -> None:
    _rig_run(tmp_path, "save", "-k", "no-tph")      # the default topology's guest is saved
    snap = _default_snapshot()
    state = snap / "state"
    if damage == "truncated":
        os.truncate(state, state.stat().st_size // 3)
    else:
        with state.open("r+b") as f:
            f.write(b"\xde\xad\xbe\xef" * 64)
    out, doc = _rig_run(tmp_path, "fallback", "-k", "no-tph")
    assert doc["started"] == {"default": "boot"} and doc["passed"]
    assert f"the snapshot {snap.name[:12]} did not restore (" in out
    assert "deleted; booting instead" in out
    # Booted, then saved again: the next run restores a good one.
    assert (snap / "state").is_file() and snap.stat().st_mtime > 0
    _, again = _rig_run(tmp_path, "again", "-k", "no-tph")
    assert again["started"] == {"default": "snapshot"} and again["passed"]
