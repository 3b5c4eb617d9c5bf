"""Guest snapshots: their key, the store, and the runner restoring instead of booting.

No QEMU here: the runner's guests are test_run_results' fake ones, whose
"snapshot" is a file naming its topology. The real save and restore, and
restore giving the same verdicts and records as a boot, are in test_e2e.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from rig.builder.artifacts import Artifacts
from rig.execution import runner
from rig.guest import snapshot
from rig.guest.topology import Topology
from rig.results.run import Run, Status
from tests.fakes import TCG, A, B, FakeCase, FakeLab


def _arts(tmp_path: Path) -> Artifacts:
    d = tmp_path / "arts"
    d.mkdir(exist_ok=True)
    paths = [d / n for n in ("qemu-system-x86_64", "qboot.rom", "bzImage", "initramfs.cpio.gz")]
    for p in paths:
        if not p.exists():
            p.write_text(p.name)
    qemu, bios, kernel, initrd = paths
    return Artifacts(qemu, bios, d, kernel, initrd, d / "client_key", d / "host_key")


def _run(lab: FakeLab, cases: list[FakeCase], tmp_path: Path, store: snapshot.Store | None,
         stages: list[str] | None = None, fault: str | None = None) -> Run:
    rundir = tmp_path / f"run-{time.monotonic_ns()}"
    rundir.mkdir()

    def on_stage(topo: str, stage: str, secs: float) -> None:
        if stages is not None:
            stages.append(f"{topo}: {stage}")

    return runner.run_matrix(cases, _arts(tmp_path), TCG, rundir, on_stage=on_stage,
                             opts=runner.Options(jobs=1, vm_factory=lab.factory,
                                                 snapshots=store, fault=fault))


def _vm(lab: FakeLab, tmp_path: Path, topo_name: str = "alpha") -> snapshot.Savable:
    guest = lab.factory(_arts(tmp_path), Topology(name=topo_name), tmp_path / "g", "tcg")
    assert isinstance(guest, snapshot.Savable)
    return guest


CASES = [FakeCase("a1", A), FakeCase("a2", A), FakeCase("b1", B)]


# --- the key -------------------------------------------------------------------------------

def test_the_key_changes_with_every_input_of_the_guest(tmp_path: Path) -> None:
    arts = _arts(tmp_path)

    def key(topo: Topology = A, accel: str = "tcg") -> str:
        return snapshot.key_of(snapshot.inputs(arts, topo, accel))

    base = key()
    assert key() == base, "the same guest, the same key"
    assert key(B) != base, "another topology"
    assert key(A.with_(memory_mb=1024)) != base, "memory"
    assert key(A.with_(cpus=2)) != base, "vCPUs"
    assert key(A.with_(append=("foo=1",))) != base, "the kernel command line"
    assert key(accel="kvm") != base, "the accelerator"
    for name in ("qemu", "bios", "kernel", "initrd"):
        f: Path = getattr(arts, name)
        before = f.read_bytes()
        f.write_bytes(before + b"x")                       # rebuilt in place: another size
        assert key() != base, name
        f.write_bytes(before)
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))   # same size, newer
        assert key() != base, f"{name}'s mtime"
        base = key()


def test_a_missing_artifact_is_an_os_error_not_a_key(tmp_path: Path) -> None:
    arts = _arts(tmp_path)
    arts.kernel.unlink()
    with pytest.raises(OSError):
        snapshot.inputs(arts, A, "tcg")


# --- the store -----------------------------------------------------------------------------

def test_a_saved_snapshot_is_found_and_an_incomplete_one_is_not(tmp_path: Path) -> None:
    store = snapshot.Store(tmp_path / "snaps")
    vm = _vm(FakeLab(), tmp_path)
    snap = store.save(vm, "k1", {"bind": "tphlab-bind x"})
    assert store.find("k1") == snap
    meta = snap.meta()
    assert meta["format"] == snapshot.FORMAT and meta["bind"] == "tphlab-bind x"
    assert store.find("k2") is None
    snap.state.unlink()
    assert store.find("k1") is None, "a meta without its state is no snapshot"
    (tmp_path / "snaps" / "k3").mkdir()
    (tmp_path / "snaps" / "k3" / "state").write_text("x")
    (tmp_path / "snaps" / "k3" / "meta.json").write_text('{"format": 0}')
    assert store.find("k3") is None, "another format is no snapshot"


def test_a_save_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    store = snapshot.Store(tmp_path / "snaps")
    with pytest.raises(Exception, match="no space left"):
        store.save(_vm(FakeLab(fate={"save": "fail"}), tmp_path), "k1", {})
    assert list((tmp_path / "snaps").iterdir()) == []


def test_prune_keeps_the_most_recently_used_and_drops_dead_partials(tmp_path: Path) -> None:
    vm = _vm(FakeLab(), tmp_path)
    for i, key in enumerate(("old", "mid", "new")):
        snapshot.Store(tmp_path / "snaps").save(vm, key, {})
        os.utime(tmp_path / "snaps" / key, (1000.0 + i, 1000.0 + i))
    store = snapshot.Store(tmp_path / "snaps", keep=2)
    store.find("old")                              # used now: the newest
    dead = tmp_path / "snaps" / ".x.partial-999999999-1"
    live = tmp_path / "snaps" / f".y.partial-{os.getpid()}-1"
    dead.mkdir()
    live.mkdir()
    store.prune()
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == sorted(
        ["old", "new", live.name])


# --- the runner ----------------------------------------------------------------------------

def _started(lab: FakeLab) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for g in lab.guests:
        if g.started_from is not None:
            out.setdefault(g.topo.name, []).append(g.started_from)
    return out


def test_the_first_run_saves_each_guest_and_the_next_restores_it(tmp_path: Path) -> None:
    store = snapshot.Store(tmp_path / "snaps")
    lab = FakeLab()
    first = _run(lab, CASES, tmp_path, store)
    assert first.passed and first.started == {"alpha": "boot", "beta": "boot"}
    assert len(list(store.root.iterdir())) == 2
    lab2 = FakeLab()
    stages: list[str] = []
    second = _run(lab2, CASES, tmp_path, store, stages)
    assert second.passed and second.started == {"alpha": "snapshot", "beta": "snapshot"}
    assert [o.status for o in second.outcomes] == [o.status for o in first.outcomes]
    assert _started(lab2) == {"alpha": ["snapshot"], "beta": ["snapshot"]}
    assert all(g.commands == [] for g in lab2.guests), "a restored guest is bound already"
    assert any(s.startswith("alpha: restored from snapshot") for s in stages)


def test_a_snapshot_that_does_not_restore_is_deleted_and_the_guest_boots(
        tmp_path: Path) -> None:
    store = snapshot.Store(tmp_path / "snaps")
    _run(FakeLab(), CASES, tmp_path, store)
    for d in store.root.iterdir():
        (d / "state").write_bytes(b"\0garbage")           # corrupted
    lab = FakeLab()
    stages: list[str] = []
    run = _run(lab, CASES, tmp_path, store, stages)
    assert run.passed, [o.failures for o in run.outcomes]
    assert run.started == {"alpha": "boot", "beta": "boot"}
    said = [s for s in stages if "did not restore" in s]
    assert len(said) == 2 and "Unable to read from file" in said[0] and "booting" in said[0]
    # Booted again, and saved again: the next run restores.
    assert all(d.joinpath("state").read_text().startswith("guest ")
               for d in store.root.iterdir())
    assert _run(FakeLab(), CASES, tmp_path, store).started["alpha"] == "snapshot"


def test_a_restored_guest_whose_devices_moved_is_stale(tmp_path: Path) -> None:
    store = snapshot.Store(tmp_path / "snaps")
    _run(FakeLab(), CASES, tmp_path, store)
    for d in store.root.iterdir():
        meta = (d / "meta.json").read_text().replace("tphlab-bind", "tphlab-bind 0000:09:00.0")
        (d / "meta.json").write_text(meta)
    stages: list[str] = []
    run = _run(FakeLab(), CASES, tmp_path, store, stages)
    assert run.started == {"alpha": "boot", "beta": "boot"} and run.passed
    assert any("bound at other addresses" in s for s in stages)


def test_a_guest_that_cannot_be_saved_runs_on(tmp_path: Path) -> None:
    store = snapshot.Store(tmp_path / "snaps")
    stages: list[str] = []
    run = _run(FakeLab(fate={"save": "fail"}), CASES, tmp_path, store, stages)
    assert run.passed and [o.status for o in run.outcomes] == [Status.PASS] * 3
    assert any("no snapshot saved: saving the guest" in s for s in stages)
    assert not store.root.exists() or list(store.root.iterdir()) == []


def test_a_run_with_a_fault_injected_neither_restores_nor_saves(tmp_path: Path) -> None:
    store = snapshot.Store(tmp_path / "snaps")
    _run(FakeLab(), CASES, tmp_path, store)
    saved = sorted(p.name for p in store.root.iterdir())
    lab = FakeLab()
    # A fault the fake guests ignore: what matters is that the run booted.
    run = _run(lab, CASES, tmp_path, store, fault="none-here")
    assert run.started == {"alpha": "boot", "beta": "boot"}
    assert sorted(p.name for p in store.root.iterdir()) == saved


def test_no_store_boots_every_guest(tmp_path: Path) -> None:
    lab = FakeLab()
    run = _run(lab, CASES, tmp_path, None)
    assert run.started == {"alpha": "boot", "beta": "boot"}
    assert all(g.commands[:1] == ["tphlab-bind"] for g in lab.guests if g.started_from)


def test_the_started_map_survives_json(tmp_path: Path) -> None:
    run = _run(FakeLab(), CASES, tmp_path, None)
    doc: dict[str, Any] = run.to_dict()
    assert Run.from_dict(doc).started == run.started
    del doc["started"]
    assert Run.from_dict(doc).started == {}, "a report of an older rig still reads"
