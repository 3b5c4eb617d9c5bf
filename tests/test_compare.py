"""rig compare: two saved runs, what each scenario did differently."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from rig.results import compare, run

DATA = Path(__file__).parent / "data"
TCG = json.loads((DATA / "run-tcg.json").read_text())


def _rig_compare(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rig", "compare", str(a), str(b)],
                          capture_output=True, text=True, timeout=60)


def _save(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _scenario(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["scenarios"] if s["name"] == name)


def test_equal_runs_compare_equal_and_exit_0(tmp_path: Path) -> None:
    a = DATA / "run-tcg.json"
    res = _rig_compare(a, a)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == (
        f"{len(TCG['scenarios'])} same, 0 changed, 0 added, 0 removed")


def test_one_record_and_one_errno_are_exactly_what_is_printed(tmp_path: Path) -> None:
    b = copy.deepcopy(TCG)
    _scenario(b, "ext-st")["records"][0]["st"] = 0xBEEE
    step = next(s for s in _scenario(b, "hostile-set-ph-4")["steps"] if s["step"] == "set-raw")
    step["errno"] = 0
    res = _rig_compare(DATA / "run-tcg.json", _save(tmp_path, "b.json", b))
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("!")] == ["! ext-st", "! hostile-set-ph-4"]
    text = res.stdout
    assert "record #1 (1 of 1 differ):" in text and "st=0xbeef" in text and "st=0xbeee" in text
    assert "errno of step #" in text and "set-raw 22" in text and "set-raw 0" in text
    assert f"{len(TCG['scenarios']) - 2} same, 2 changed, 0 added, 0 removed" in lines


def test_what_differs_between_equal_runs_is_ignored() -> None:
    b = copy.deepcopy(TCG)
    for s in b["scenarios"]:
        s["seconds"] += 1.0
        s["output"] = "/elsewhere"
        for r in s["records"]:
            r["seq"] = int(r.get("seq", 0)) + 7
            r["generation"] = int(r.get("generation", 0)) + 1
            r["requester-id"] = int(r["requester-id"]) + 0x100   # the bus numbers moved
        for st in s["steps"]:
            if "fd" in st:
                st["fd"] = 99
    assert compare.compare(run.Run.from_dict(TCG), run.Run.from_dict(b)).equal


def test_added_removed_and_a_changed_verdict(tmp_path: Path) -> None:
    b = copy.deepcopy(TCG)
    gone = b["scenarios"].pop(0)
    new = copy.deepcopy(gone) | {"name": "new-one"}
    b["scenarios"].append(new)
    _scenario(b, "st8-ph0").update(status="FAIL", passed=False)
    got = compare.compare(run.Run.from_dict(TCG), run.Run.from_dict(b))
    assert [o.name for o in got.added] == ["new-one"]
    assert [o.name for o in got.removed] == [gone["name"]]
    assert got.changed["st8-ph0"] == [compare.Change("status", "PASS", "FAIL")]
    text = compare.render(got)
    assert "+ new-one (only in B) PASS" in text and f"- {gone['name']} (only in A)" in text


def test_an_older_report_format_is_read() -> None:
    """run-before-status.json is from before "status" and "records" (a pass
    was a bool, the log was read per pause)."""
    old = run.load(DATA / "run-before-status.json")
    got = compare.compare(old, run.Run.from_dict(TCG))
    assert got.same > 0
    both = {o.name for o in old.outcomes} & {o["name"] for o in TCG["scenarios"]}
    assert got.same + len(got.changed) == len(both)
    assert compare.compare(old, old).equal


def test_an_unreadable_run_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("[]")
    res = _rig_compare(bad, DATA / "run-tcg.json")
    assert res.returncode == 2
    assert f"cannot read the run report {bad}" in res.stderr


def test_a_reader_that_goes_away_ends_it_quietly() -> None:
    """`rig report -v RUN | true`: the table meets a pipe whose reader is gone
    (it exits long before Python has started); the rig stops with 141, not an
    internal error."""
    res = subprocess.run(f"{sys.executable} -m rig report -v {DATA / 'run-tcg.json'} | true; "
                         "echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                         capture_output=True, text=True, timeout=60)
    assert res.stdout.splitlines() == ["141"]
    assert res.stderr == ""
