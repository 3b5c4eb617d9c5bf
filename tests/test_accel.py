"""`--accel kvm` means KVM: KVM or exit 2 with the reason and the fix; only `auto` falls back.

No real QEMU: kvm.detect, kvm.qemu_accepts_kvm and runner.VM and bringup.VM are faked, and
so are the builds.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from rig.builder import artifacts
from rig.builder.artifacts import Artifacts
from rig.cli import main as cli_main
from rig.cli import options
from rig.errors import AccelError, GuestError
from rig.execution import runner, scenario_run
from rig.guest import bringup, devices, kvm, vm
from rig.guest.devices import Bench, Benches
from rig.guest.topology import Topology
from rig.guest.vm import console_tail
from rig.progress import Progress
from rig.results.run import Outcome, Status
from rig.scenarios import matrix
from rig.scenarios.kit import Scenario

NO_KVM = "/dev/kvm is not read/writable by this user"
QEMU_ERROR = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0"
PROBE_OK = "a test VM ran a port write and hlt"
QEMU_OK = "a test VM ran a port write and hlt; QEMU starts under KVM"


class FakeVM:
    """rig.guest.vm.VM without QEMU: under KVM the guest hangs in the kernel, under TCG it boots."""

    made: ClassVar[list[FakeVM]] = []
    kvm_stage: ClassVar[str] = "kernel"      # where a KVM boot stops

    def __init__(self, arts: Artifacts, topo: Topology, rundir: Path, accel: str,
                 tph_devices: bool = True) -> None:
        self.topo, self.rundir, self.accel = topo, rundir, accel
        rundir.mkdir(parents=True, exist_ok=True)
        self.console = rundir / "console.log"
        self.stage = "qemu"
        self.boot_seconds = 0.0
        self.stopped = False
        FakeVM.made.append(self)

    def start(self, timeout: float = 120.0,
              on_stage: Callable[[str, float], None] | None = None) -> None:
        if self.accel == "kvm":
            self.stage = FakeVM.kvm_stage
            self.console.write_text("Linux version 7.2.13-tphlab\nrcu: INFO: rcu_sched "
                                    "self-detected stall on CPU\n")
            raise GuestError(f"guest boot hung: no progress past stage {self.stage} in "
                             f"{timeout:.0f} s; console {self.console}:\n"
                             f"{console_tail(self.console)}")
        self.stage = "ssh"
        self.boot_seconds = 1.25
        if on_stage:
            on_stage("ssh", self.boot_seconds)

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped = True

    def alive(self) -> bool:
        return not self.stopped


@pytest.fixture
def arts(tmp_path: Path) -> Artifacts:
    d = tmp_path / "arts"
    return Artifacts(d / "qemu-system-x86_64", d / "share/qboot.rom", d / "share",
                     d / "bzImage", d / "initramfs.cpio.gz", d / "client_key", d / "host_key")


@pytest.fixture
def fake_bench(monkeypatch: pytest.MonkeyPatch, cache_home: Path,
               arts: Artifacts) -> list[FakeVM]:
    """Builds, the device check, guests and scenarios faked; returns the VMs made."""
    built = SimpleNamespace(guest=lambda: arts, sources=lambda: {
        c: {"describe": f"fake {c}"} for c in ("qemu", "kernel")})
    monkeypatch.setattr(artifacts, "build", lambda request, progress: built)
    monkeypatch.setattr(vm, "require_device", lambda qemu: None)
    monkeypatch.setattr(FakeVM, "made", [])
    monkeypatch.setattr(bringup, "VM", FakeVM)
    monkeypatch.setattr(devices, "bind_devices",
                        lambda vm, clear_log=False: Benches(
                            {vm.topo.name: Bench("0000:00:03.0", "0000:00:04.0")}))

    def run_case(vm: FakeVM, case: Scenario, bench: Bench, timeout: float = 60.0,
                 *rest: Any) -> Outcome:
        return scenario_run.outcome_of(case, Status.PASS, 0.1)

    monkeypatch.setattr(runner, "run_case", run_case)
    return FakeVM.made


def _kvm_host(monkeypatch: pytest.MonkeyPatch, probe: kvm.KvmStatus,
              qemu: kvm.KvmStatus | None = None) -> list[Path]:
    """Fake the vCPU probe and QEMU's start under KVM; returns the QEMUs started."""
    started: list[Path] = []

    def accepts(q: Path, datadir: Path, wait: float = 3.0) -> kvm.KvmStatus:
        assert qemu is not None, "QEMU was started under KVM though the probe refused it"
        started.append(q)
        return qemu

    monkeypatch.setattr(kvm, "detect", lambda timeout=5.0: probe)
    monkeypatch.setattr(kvm, "qemu_accepts_kvm", accepts)
    return started


@pytest.mark.parametrize("command", ["run", "boot", "bench"])
def test_explicit_kvm_refused_by_the_probe_exits_2(
        command: str, monkeypatch: pytest.MonkeyPatch, fake_bench: list[FakeVM],
        capsys: pytest.CaptureFixture[str]) -> None:
    _kvm_host(monkeypatch, kvm.KvmStatus(False, NO_KVM))
    rc = cli_main.main([command, "--accel", "kvm"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"--accel kvm: KVM is not usable here: {NO_KVM}" in err
    assert "fix:" in err and "--accel tcg" in err and "nested virtualization" in err
    assert "falling back" not in err
    assert fake_bench == [], "a guest was started"


def test_explicit_kvm_refused_by_qemu_exits_2_naming_its_error(
        monkeypatch: pytest.MonkeyPatch, fake_bench: list[FakeVM], arts: Artifacts,
        capsys: pytest.CaptureFixture[str]) -> None:
    started = _kvm_host(monkeypatch, kvm.KvmStatus(True, PROBE_OK),
                        kvm.KvmStatus(False, f"QEMU quits under KVM: {QEMU_ERROR}"))
    rc = cli_main.main(["run", "--accel", "kvm"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert started == [arts.qemu], "the bench's QEMU was not tried under KVM"
    assert f"KVM is not usable here: QEMU quits under KVM: {QEMU_ERROR}" in err
    assert "--accel tcg" in err
    assert fake_bench == []


def test_explicit_kvm_guest_not_reaching_init_exits_2(
        monkeypatch: pytest.MonkeyPatch, fake_bench: list[FakeVM],
        capsys: pytest.CaptureFixture[str]) -> None:
    _kvm_host(monkeypatch, kvm.KvmStatus(True, PROBE_OK), kvm.KvmStatus(True, QEMU_OK))
    rc = cli_main.main(["run", "-k", "no-tph", "--accel", "kvm"])
    out, err = capsys.readouterr()
    assert rc == 2, out + err
    assert "--accel kvm: the guest (default) did not reach /init under KVM" in err
    assert "last boot stage: kernel" in err
    assert "    | rcu: INFO: rcu_sched self-detected stall on CPU" in err
    assert "--accel tcg" in err
    assert "falling back" not in err and "0/1 scenarios passed (1 not run)" in out
    assert "no-tph: not run: the guest (default) did not boot: --accel kvm" in out
    assert [vm.accel for vm in fake_bench] == ["kvm"] and fake_bench[0].stopped


def test_start_vm_explicit_kvm_raises_instead_of_falling_back(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, arts: Artifacts) -> None:
    monkeypatch.setattr(FakeVM, "made", [])
    monkeypatch.setattr(bringup, "VM", FakeVM)
    stages: list[str] = []
    with pytest.raises(AccelError) as exc:
        bringup.start_vm(arts, Topology(), tmp_path / "boot",
                        kvm.Accel("kvm", "asked for with --accel kvm"),
                        lambda s, t: stages.append(s))
    assert exc.value.exit_code == 2
    assert "last boot stage: kernel" in exc.value.message
    assert "Linux version 7.2.13-tphlab" in exc.value.message
    assert [vm.accel for vm in FakeVM.made] == ["kvm"] and FakeVM.made[0].stopped
    assert not (tmp_path / "boot" / "kvm-fallback.txt").exists()
    assert not any("falling back" in s for s in stages)


def test_start_vm_past_init_under_kvm_is_the_guests_fault(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, arts: Artifacts) -> None:
    """A guest that got to /init under KVM and then failed is not KVM's doing: exit 3."""
    monkeypatch.setattr(FakeVM, "made", [])
    monkeypatch.setattr(FakeVM, "kvm_stage", "network")
    monkeypatch.setattr(bringup, "VM", FakeVM)
    for auto in (False, True):
        with pytest.raises(GuestError) as exc:
            bringup.start_vm(arts, Topology(), tmp_path / f"boot-{auto}",
                            kvm.Accel("kvm", "why", auto=auto))
        assert not isinstance(exc.value, AccelError) and exc.value.exit_code == 3
    assert [vm.accel for vm in FakeVM.made] == ["kvm", "kvm"]


def test_start_vm_auto_falls_back_with_the_reason(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, arts: Artifacts) -> None:
    monkeypatch.setattr(FakeVM, "made", [])
    monkeypatch.setattr(bringup, "VM", FakeVM)
    stages: list[str] = []
    vm, used = bringup.start_vm(arts, Topology(), tmp_path / "boot",
                               kvm.Accel("kvm", f"auto: {QEMU_OK}", auto=True),
                               lambda s, t: stages.append(s))
    assert used.name == "tcg" and vm.accel == "tcg"
    assert used.reason.startswith("auto: the guest (default) did not reach /init under KVM")
    assert "last boot stage: kernel" in used.reason and "fell back to TCG" in used.reason
    assert any("falling back to TCG" in s and used.reason in s for s in stages)
    note = (tmp_path / "boot" / "kvm-fallback.txt").read_text()
    assert "stage kernel" in note and "rcu_sched self-detected stall" in note
    assert [v.accel for v in FakeVM.made] == ["kvm", "tcg"] and FakeVM.made[0].stopped


def test_auto_chooses_tcg_and_says_why(monkeypatch: pytest.MonkeyPatch, arts: Artifacts,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _kvm_host(monkeypatch, kvm.KvmStatus(False, NO_KVM))
    accel = options.choose_accel("auto", Progress(), arts)
    assert accel == kvm.Accel("tcg", f"auto: {NO_KVM}", auto=True)
    assert f"accelerator: tcg (auto: {NO_KVM})" in capsys.readouterr().err
    _kvm_host(monkeypatch, kvm.KvmStatus(True, PROBE_OK),
              kvm.KvmStatus(False, f"QEMU quits under KVM: {QEMU_ERROR}"))
    accel = options.choose_accel("auto", Progress(), arts)
    assert accel.name == "tcg" and QEMU_ERROR in accel.reason
    _kvm_host(monkeypatch, kvm.KvmStatus(True, PROBE_OK), kvm.KvmStatus(True, QEMU_OK))
    assert options.choose_accel("auto", Progress(), arts) == \
        kvm.Accel("kvm", f"auto: {QEMU_OK}", auto=True)
    assert options.choose_accel("kvm", Progress(), arts) == \
        kvm.Accel("kvm", "asked for with --accel kvm")


def test_tcg_asks_nothing_of_kvm(monkeypatch: pytest.MonkeyPatch, arts: Artifacts) -> None:
    def no_probe(timeout: float = 5.0) -> kvm.KvmStatus:
        raise AssertionError("--accel tcg probed KVM")

    monkeypatch.setattr(kvm, "detect", no_probe)
    assert options.choose_accel("tcg", Progress(), arts) == \
        kvm.Accel("tcg", "asked for with --accel tcg")


def _run_auto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str,
                                                                          dict[str, Any],
                                                                          ET.Element]:
    js, junit = tmp_path / "run.json", tmp_path / "junit.xml"
    rc = cli_main.main(["run", "-k", "no-tph", "--accel", "auto", "--keep", "--json", str(js),
                   "--junit", str(junit)])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    return out, err, json.loads(js.read_text()), ET.fromstring(junit.read_text())


def _unwrapped(table: str) -> str:
    """The table with its wrapped lines joined again."""
    return table.replace("\n    ", " ")


def _junit_props(root: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in root.iter("property")}


def test_auto_run_on_a_host_without_kvm_reports_why(
        monkeypatch: pytest.MonkeyPatch, fake_bench: list[FakeVM], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _kvm_host(monkeypatch, kvm.KvmStatus(False, NO_KVM))
    out, err, doc, junit = _run_auto(tmp_path, capsys)
    assert f"accelerator: tcg (auto: {NO_KVM})" in err
    assert f"1/1 scenarios passed\n  accel tcg (auto: {NO_KVM})\n" in out
    assert doc["accel"] == "tcg" and doc["accel_reason"] == f"auto: {NO_KVM}"
    props = _junit_props(junit)
    assert (props["accel"], props["accel_reason"]) == ("tcg", f"auto: {NO_KVM}")
    assert [vm.accel for vm in fake_bench] == ["tcg"]


def test_auto_run_falls_back_when_the_guest_hangs_under_kvm(
        monkeypatch: pytest.MonkeyPatch, fake_bench: list[FakeVM], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _kvm_host(monkeypatch, kvm.KvmStatus(True, PROBE_OK), kvm.KvmStatus(True, QEMU_OK))
    out, err, doc, junit = _run_auto(tmp_path, capsys)
    why = "auto: the guest (default) did not reach /init under KVM (last boot stage: kernel"
    assert "falling back to TCG" in err and why in err
    assert doc["accel"] == "tcg" and doc["accel_reason"].startswith(why)
    assert f"\n  accel tcg ({doc['accel_reason']})\n" in _unwrapped(out)
    assert _junit_props(junit)["accel_reason"] == doc["accel_reason"]
    assert (Path(doc["logs"]) / "default" / "kvm-fallback.txt").is_file()
    assert [vm.accel for vm in fake_bench] == ["kvm", "tcg"]


def test_run_matrix_names_the_topology_that_fell_back(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, arts: Artifacts) -> None:
    cases = [c for c in matrix.full() if c.name in ("no-tph", "st8-ph0")]
    assert [c.topo.name for c in cases] == ["default", "importer-8bit"]
    auto = kvm.Accel("kvm", f"auto: {QEMU_OK}", auto=True)

    def run_group(topo: Topology, members: list[Scenario], *rest: Any,
                  **kw: Any) -> runner.GroupResult:
        used = auto.fallen_back(f"the guest ({topo.name}) hung") if topo.name != "default" \
            else auto
        return runner.GroupResult(used, 1.0, [scenario_run.outcome_of(c, Status.PASS, 0.1)
                                              for c in members])

    monkeypatch.setattr(runner, "run_group", run_group)
    run = runner.run_matrix(cases, arts, auto, tmp_path, opts=runner.Options(jobs=1, pack=False))
    assert run.accel == "tcg"
    assert run.accel_reason == "auto: the guest (importer-8bit) hung; default ran under KVM"
    monkeypatch.setattr(runner, "run_group",
                        lambda topo, members, *r, **k: runner.GroupResult(auto, 1.0))
    run = runner.run_matrix(cases, arts, auto, tmp_path, opts=runner.Options(jobs=1))
    assert (run.accel, run.accel_reason) == ("kvm", f"auto: {QEMU_OK}")
