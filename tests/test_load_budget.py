"""Several rigs on one machine: one budget of vCPUs, and stalls that are warnings, not splats."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from rig.errors import GuestError
from rig.guest import budget, kernel_log, topology

STALL = (Path(__file__).parent / "data" / "dmesg-stall.txt").read_text()


def test_a_stall_report_and_its_dump_are_warnings_and_a_warn_still_fails() -> None:
    splats, warnings = kernel_log.classify_dmesg(STALL)
    assert splats == [ln for ln in STALL.splitlines() if "43.0000" in ln or "43.0001" in ln]
    assert warnings[0].endswith("rcu: INFO: rcu_sched detected stalls on CPUs/tasks:")
    assert any("</TASK>" in w for w in warnings) and len(warnings) == 16
    assert kernel_log.dmesg_splats(STALL) == splats
    # Without the stall head, a Call Trace is a report as before.
    assert kernel_log.dmesg_splats("[ 1.0] Call Trace:\n") == ["[ 1.0] Call Trace:"]
    lockup = "[ 9.0] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [sh:1]\n[ 9.1] Call Trace:\n"
    assert kernel_log.classify_dmesg(lockup) == ([], lockup.splitlines())
    kasan = "[ 9.0] rcu: INFO: rcu_sched self-detected stall on CPU\n[ 9.2] BUG: KASAN: x\n"
    assert kernel_log.dmesg_splats(kasan) == ["[ 9.2] BUG: KASAN: x"]


def test_tcg_guests_get_the_longest_stall_timeouts_kvm_ones_do_not(tmp_path: Path) -> None:
    def append(accel: str) -> str:
        boot = topology.Boot(tmp_path / "q", tmp_path / "b", tmp_path, tmp_path / "k",
                             tmp_path / "i", accel, 2222, tmp_path / "qmp", tmp_path / "con")
        argv = topology.qemu_argv(boot, topology.Topology())
        return argv[argv.index("-append") + 1]

    assert "rcupdate.rcu_cpu_stall_timeout=300" in append("tcg")
    assert "watchdog_thresh=60" in append("tcg")
    assert "rcu_cpu_stall_timeout" not in append("kvm")


def _free_slots(root: Path) -> int:
    """Slot files nobody holds, tried directly (not through the budget's turnstile)."""
    free = 0
    for path in sorted((root / "vcpu-budget").glob("slot-*")):
        with path.open("a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            free += 1
    return free


def test_the_budget_is_shared_all_or_nothing_and_waits_with_a_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(budget.BUDGET_ENV, "2")
    said: list[str] = []
    with budget.Slots(root=tmp_path) as slots:
        assert slots.hold(1) == 1
        got = threading.Event()

        def second() -> None:
            # Two slots are asked while one is taken: it waits, holding none.
            with budget.Slots(said.append, root=tmp_path) as pair:
                pair.hold(2)
                got.set()

        t = threading.Thread(target=second)
        t.start()
        time.sleep(budget.SAY_AFTER + 0.3)
        assert not got.is_set() and said and "waiting for 2 of the machine's 2" in said[0]
        assert _free_slots(tmp_path) == 1
    t.join(5)
    assert got.is_set()


def test_a_waiter_for_two_slots_is_served_before_later_takers_of_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Otherwise guests taking one slot after another would starve it for good."""
    monkeypatch.setenv(budget.BUDGET_ENV, "2")
    order: list[str] = []
    first = budget.Slots(root=tmp_path)
    first.hold(1)

    def take(name: str, count: int) -> None:
        with budget.Slots(root=tmp_path) as slots:
            slots.hold(count)
            order.append(name)
            time.sleep(0.2)

    pair = threading.Thread(target=take, args=("pair", 2))
    pair.start()
    time.sleep(0.3)
    single = threading.Thread(target=take, args=("single", 1))
    single.start()
    time.sleep(0.3)
    # A slot is free, but the pair waits for it first.
    assert order == [] and _free_slots(tmp_path) == 1
    first.release()
    pair.join(5)
    single.join(5)
    assert order == ["pair", "single"]


def test_slots_grow_and_shrink_and_hold_none_while_growing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(budget.BUDGET_ENV, "2")
    a, b = budget.Slots(root=tmp_path), budget.Slots(root=tmp_path, timeout=0.3)
    assert a.hold(1) == 1 and b.hold(1) == 1 and _free_slots(tmp_path) == 0
    # b asks for both while a holds one: b gives its own back, waits, then gives up.
    with pytest.raises(GuestError, match="waited 0 s for 2"):
        b.hold(2)
    assert b.count == 0 and _free_slots(tmp_path) == 1
    a.release()
    assert b.hold(2) == 2 and _free_slots(tmp_path) == 0
    assert b.hold(1) == 1 and _free_slots(tmp_path) == 1
    assert b.hold(5) == 2     # never more than the budget
    b.release()
    assert _free_slots(tmp_path) == 2


def test_a_guest_larger_than_the_budget_takes_the_whole_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(budget.BUDGET_ENV, "1")
    with budget.Slots(root=tmp_path) as slots:
        assert slots.hold(4) == 1 and slots.count == 1


def test_a_wait_has_a_bound_and_a_bad_budget_is_named(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(budget.BUDGET_ENV, "1")
    with budget.Slots(root=tmp_path) as one, budget.Slots(root=tmp_path, timeout=0.3) as two:
        one.hold(1)
        with pytest.raises(GuestError, match="waited 0 s"):
            two.hold(1)
    monkeypatch.setenv(budget.BUDGET_ENV, "zero")
    with pytest.raises(GuestError, match="TPHLAB_VCPUS='zero'"):
        budget.size()
