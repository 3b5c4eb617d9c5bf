"""What kind of check found each difference, and the DIFFERS verdict.

Every check of every scenario, run on the recorded run of the whole matrix
with its input damaged one way at a time, answers Findings whose kind
follows from what it read: the exporter's records are wire, a step of the
series' uAPI (PROBE, SET) is contract, the importer's transfers and the
steps around them are dma, the after-checks are health. A kernel that is
not the reference series gets DIFFERS for a scenario whose every
difference is of contract, FAIL as soon as one is not.
"""

from __future__ import annotations

import copy
import errno
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rig.builder import reference
from rig.builder.mailseries import MailSeries
from rig.builder.sources import Source
from rig.builder.treestate import TreeState
from rig.execution import scenario_run
from rig.results.run import Status
from rig.scenarios import matrix
from rig.scenarios.findings import Finding, Kind, contract, dma, health, wire
from rig.scenarios.kit import CONTRACT_STEPS, Scenario, Seen, expect_errno, expect_ok
from rig.scenarios.protocol import FIELDS, Copy, Dma, Probe, Read, Set, SetRaw, TphGet
from rig.scenarios.selftests import KernelSelftest
from rig.scenarios.tphctl_output import Steps

RECORDED = json.loads((Path(__file__).parent / "data" / "run-tcg.json").read_text())
BY_NAME = {s["name"]: s for s in RECORDED["scenarios"]}
CONTRACT_NAMES = {k.NAME for k in CONTRACT_STEPS}


def _seen(name: str) -> Seen:
    doc = BY_NAME[name]
    recs = doc["records"]
    rid = int(recs[0]["requester-id"]) if recs else 0
    return Seen(copy.deepcopy(doc["steps"]), copy.deepcopy(recs), rid)


def _kinds(case: Scenario, seen: Seen) -> list[Kind]:
    found = case.check(seen)
    assert all(isinstance(f, Finding) for f in found), \
        f"{case.name}: a check answered a text that is not a Finding: {found}"
    return [f.kind for f in found if isinstance(f, Finding)]


def _records_damaged(seen: Seen) -> Seen:
    """Every record's hint changed, or a record where none was."""
    if not seen.records:
        seen.records = [{"seq": 0, "generation": 0, "requester-id": seen.rid, "offset": 0,
                         "length": 64, "th": True, "st": 0x77, "ph": 3, "ext": True,
                         "malformed": False, "direction": "write"}]
    for r in seen.records:
        r.update(th=True, st=(int(r["st"]) ^ 0x5) & 0xFF, ph=(int(r["ph"]) + 1) % 4)
    return seen


def _uapi_errno_changed(seen: Seen) -> Seen:
    """Every step of the series' uAPI answers with another errno."""
    for s in seen.steps:
        if s.get("step") in CONTRACT_NAMES:
            e = int(s.get("errno", 0))
            s.update(ret=0, errno=0) if e else s.update(ret=-1, errno=errno.EPERM)
    return seen


def _transfers_failed(seen: Seen) -> Seen:
    """Every importer transfer and step around it fails with EIO."""
    for s in seen.steps:
        if s.get("step") not in CONTRACT_NAMES and "errno" in s:
            s.update(ret=-1, errno=errno.EIO)
    return seen


def _tainted(seen: Seen) -> Seen:
    """The kernel tainted beyond the test importer (W, a warning)."""
    for s in seen.steps:
        if s.get("step") == "tainted":
            s["mask"] = int(s["mask"]) | 1 << 9
    return seen


# The kernel selftests' checks read their programs' KTAP, not tphctl's
# steps: their kinds are tested apart (test_a_selftest_failure_is_its_kind)
SELFTESTS = [c.name for c in matrix.full() if isinstance(c, KernelSelftest)]
CASES = [c.name for c in matrix.full() if c.name not in SELFTESTS]
# Scenarios whose claim is not the hints of the records they hold: the stale
# IOVA's is that nothing of the stale DMA arrived (it counts the records)
HINTS_NOT_THEIR_CLAIM = {"rootports-stale-iova"}
# Scenarios that run no transfer: they read the kernel's taint
NO_TRANSFER = {c.name for c in matrix.full() if c.name.endswith("-no-taint")}


@pytest.mark.parametrize("name", CASES)
def test_every_check_says_what_kind_of_difference_it_found(name: str) -> None:
    """The kinds each scenario's checks answer, listed per damage: records
    damaged answer wire (or dma where the record count is the evidence of a
    transfer), a changed uAPI errno answers contract (or nothing where the
    scenario sets no TPH), failed transfers never answer contract or wire
    alone. Nothing is a plain text."""
    case = next(c for c in matrix.full() if c.name == name)
    wires = _kinds(case, _records_damaged(_seen(name)))
    uapi = _kinds(case, _uapi_errno_changed(_seen(name)))
    transfers = _kinds(case, _transfers_failed(_seen(name)))
    print(f"{name}: records {Counter(wires)}, uAPI errno {Counter(uapi)}, "
          f"transfers {Counter(transfers)}")
    assert Kind.CONTRACT not in wires and Kind.HEALTH not in wires
    # A scenario that reads records notices damage there (a few check only
    # what comes back to userspace: the CPU's tags, the group, the taint)
    if BY_NAME[name]["records"] and name not in HINTS_NOT_THEIR_CLAIM:
        assert Kind.WIRE in wires, wires
    assert Kind.HEALTH not in uapi
    if any(s.get("step") in CONTRACT_NAMES for s in BY_NAME[name]["steps"]):
        assert Kind.CONTRACT in uapi, f"{name}: a changed uAPI errno is not a contract finding"
    assert Kind.HEALTH not in transfers
    if name not in NO_TRANSFER:
        assert Kind.DMA in transfers, transfers
    else:
        assert Kind.HEALTH in _kinds(case, _tainted(_seen(name)))


@pytest.mark.parametrize(("helper", "step", "kind"), [
    (expect_ok, Set, Kind.CONTRACT), (expect_ok, SetRaw, Kind.CONTRACT),
    (expect_ok, Probe, Kind.CONTRACT), (expect_ok, TphGet, Kind.CONTRACT),
    (expect_ok, Dma, Kind.DMA), (expect_ok, Read, Kind.DMA), (expect_ok, Copy, Kind.DMA),
    (expect_errno, Set, Kind.CONTRACT), (expect_errno, Dma, Kind.DMA),
])
def test_a_step_check_takes_its_kind_from_the_step(helper: Any, step: Any, kind: Kind) -> None:
    full: dict[str, Any] = {f: "" if hint is str else 0 for f, hint in FIELDS[step]}
    full.update(step=step.NAME, ret=-1, errno=errno.EIO, error="x")
    args = (Steps([full]), step) if helper is expect_ok else (Steps([full]), step, 0)
    (found,) = helper(*args)
    assert isinstance(found, Finding) and found.kind is kind
    if kind is Kind.CONTRACT:
        assert found.reference == "success" and found.seen == "EIO"


def test_the_after_checks_are_health() -> None:
    checked = scenario_run.after_checks("BUG: KASAN: use-after-free in x\n"
                                        "tphlab-dmabufs: 2\n")
    assert checked.failures
    assert {f.kind for f in checked.failures if isinstance(f, Finding)} == {Kind.HEALTH}
    assert all(isinstance(f, Finding) for f in checked.failures)


def test_differs_only_off_the_reference_and_only_for_contract() -> None:
    c = contract("query returned success, expected ENODEV", "ENODEV", "success")
    assert scenario_run.verdict([], False) is Status.PASS
    assert scenario_run.verdict([c], False) is Status.DIFFERS
    assert scenario_run.verdict([c], True) is Status.FAIL
    for fault in (wire("w"), dma("d"), health("h"), "a plain text"):
        assert scenario_run.verdict([c, fault], False) is Status.FAIL


def test_an_outcome_keeps_each_kind_and_both_values_of_a_contract_difference() -> None:
    case = next(c for c in matrix.full() if c.name == "revoke-decode")
    c = contract("importer status #1: the exporter's TPH query returned success, expected "
                 "ENODEV", "ENODEV", "success")
    o = scenario_run.outcome_of(case, Status.DIFFERS, 0.1, [c, wire("x")])
    assert o.kinds == ["contract", "wire"]
    assert o.contract == [{"check": str(c), "reference": "ENODEV", "seen": "success"}]
    assert o.failures == [str(c), "x"] and type(o.failures[0]) is str


# --- which kernel is the reference series ------------------------------------------------

def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def series_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Path]]:
    """A git tree whose last two commits are "our series", and their mails."""
    tree = tmp_path / "tree"
    tree.mkdir()
    _git(tree, "init", "-q")
    _git(tree, "config", "user.email", "t@example.org")
    _git(tree, "config", "user.name", "t")
    (tree / "a.c").write_text("int a;\n")
    _git(tree, "add", ".")
    _git(tree, "commit", "-qm", "base")
    for i in (1, 2):
        (tree / "a.c").write_text((tree / "a.c").read_text() + f"int b{i};\n")
        _git(tree, "commit", "-qam", f"patch {i}")
    mails = tmp_path / "mails"
    _git(tree, "format-patch", "-q", "-o", str(mails), "HEAD~2")
    patches = sorted(mails.glob("*.patch"))
    monkeypatch.setattr(reference, "ours", lambda: reference.of_files(patches))
    return tree, patches


def test_the_reference_is_told_by_patch_id(series_repo: tuple[Path, list[Path]],
                                           tmp_path: Path) -> None:
    tree, patches = series_repo
    head = _git(tree, "rev-parse", "HEAD").strip()

    def mails(files: list[Path]) -> Source:
        return Source("kernel", "debian", "linux=7.2", "7.2",
                      mails=MailSeries(str(tmp_path), tuple(files), (), False))

    def tree_src(dirty: bool) -> Source:
        return Source("kernel", "tree", str(tree), "tree",
                      tree=TreeState(str(tree), True, head, "x" if dirty else ""))

    assert reference.is_reference(Source("kernel", "debian", "linux=7.2", "7.2"))
    assert reference.is_reference(mails(patches))
    # The same patches, reworded and renumbered: the same code
    renamed = tmp_path / "renamed.patch"
    renamed.write_text(patches[1].read_text().replace("Subject: [PATCH 2/2] patch 2",
                                                      "Subject: [PATCH v12 2/2] reworded"))
    assert reference.is_reference(mails([patches[0], renamed]))
    # One line of code changed: another series
    edited = tmp_path / "edited.patch"
    edited.write_text(patches[1].read_text().replace("+int b2;", "+int b2 = 1;"))
    assert not reference.is_reference(mails([patches[0], edited]))
    assert not reference.is_reference(mails(patches[:1]))
    assert reference.is_reference(tree_src(dirty=False))
    assert not reference.is_reference(tree_src(dirty=True))
    _git(tree, "commit", "-q", "--allow-empty", "-m", "on top")
    head = _git(tree, "rev-parse", "HEAD").strip()
    assert reference.of_tree(str(tree), 2) != reference.ours()


@pytest.mark.parametrize("name", SELFTESTS)
def test_a_selftest_failure_is_its_kind(name: str) -> None:
    """A kernel selftest's recorded run passes its check; with its first
    passing case turned into a failure it answers selftest findings only."""
    case = next(c for c in matrix.full() if c.name == name)
    doc = BY_NAME[name]
    seen = Seen([], [], 0, doc["ktap"], dict(doc["dma_errors"]))
    assert case.check(seen) == []
    lines = doc["ktap"].splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("ok ") and "# SKIP" not in ln)
    lines[first] = "not " + lines[first]
    seen.output = "\n".join(lines)
    assert set(_kinds(case, seen)) == {Kind.SELFTEST}
