from __future__ import annotations

import json
from pathlib import Path

import pytest

from rig import doctor, tools
from rig.guest import kvm


def _lines(checks: list[doctor.Check]) -> tuple[int, str]:
    out: list[str] = []
    rc = doctor.run(checks, out.append)
    return rc, "\n".join(out)


def test_missing_required_piece_fails_with_its_fix() -> None:
    checks = [
        doctor.Check("ninja", lambda: None, "apt-get install -y ninja-build"),
        doctor.Check("busybox", lambda: "/bin/busybox missing",
                     "apt-get install -y busybox-static"),
        doctor.Check("flex", lambda: "flex not on PATH", "apt-get install -y flex"),
    ]
    rc, text = _lines(checks)
    assert rc == 1
    assert "ok    ninja" in text
    assert "busybox: /bin/busybox missing" in text
    assert "apt-get install -y busybox-static flex" in text


def test_optional_piece_only_notes() -> None:
    checks = [doctor.Check("KVM usable", lambda: "hangs", "enable KVM", required=False)]
    rc, text = _lines(checks)
    assert rc == 0
    assert "note  KVM usable: hangs" in text and "host ready" in text


def test_package_list_is_read_and_covers_the_checks() -> None:
    pkgs = set(doctor.apt_packages())
    for check in doctor.CHECKS:
        if check.fix.startswith(tools.APT):
            assert set(check.fix.split()[3:]) <= pkgs, check.name


KVM_CHECK = next(c for c in doctor.CHECKS if c.name == "KVM usable")


def _fake_kvm(monkeypatch: pytest.MonkeyPatch, probe: kvm.KvmStatus,
              qemu: kvm.KvmStatus | None, built: tuple[Path, Path] | None) -> list[Path]:
    started: list[Path] = []

    def accepts(q: Path, datadir: Path, wait: float = 3.0) -> kvm.KvmStatus:
        assert qemu is not None
        started.append(q)
        return qemu

    monkeypatch.setattr(kvm, "detect", lambda timeout=5.0: probe)
    monkeypatch.setattr(kvm, "qemu_accepts_kvm", accepts)
    monkeypatch.setattr(doctor, "bench_qemu", lambda: built)
    return started


PROBE_OK = kvm.KvmStatus(True, "a test VM ran a port write and hlt")
BUILT = (Path("/cache/qemu/k/qemu-system-x86_64"), Path("/cache/qemu/k/share"))


def test_doctor_kvm_is_not_usable_when_qemu_quits_under_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    msr = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0"
    started = _fake_kvm(monkeypatch, PROBE_OK,
                        kvm.KvmStatus(False, f"QEMU quits under KVM: {msr}"), BUILT)
    rc, text = _lines([KVM_CHECK])
    assert rc == 0 and started == [BUILT[0]]
    assert f"note  KVM usable: QEMU quits under KVM: {msr}" in text
    assert "ok    KVM usable" not in text and "`--accel kvm` exits 2" in text


def test_doctor_kvm_not_confirmed_before_qemu_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    started = _fake_kvm(monkeypatch, PROBE_OK, None, None)
    rc, text = _lines([KVM_CHECK])
    assert rc == 0 and started == []
    assert "note  KVM usable:" in text and "not built yet" in text
    assert "KVM is not confirmed" in text and "`--accel auto` checks" in text


def test_doctor_kvm_usable_when_probe_and_qemu_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kvm(monkeypatch, PROBE_OK,
              kvm.KvmStatus(True, "a test VM ran a port write and hlt; QEMU starts under KVM"),
              BUILT)
    assert "ok    KVM usable" in _lines([KVM_CHECK])[1]


def test_doctor_kvm_refused_by_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kvm(monkeypatch, kvm.KvmStatus(False, "/dev/kvm does not exist"), None, BUILT)
    text = _lines([KVM_CHECK])[1]
    assert "note  KVM usable: /dev/kvm does not exist; `--accel auto` runs guests under TCG" \
        in text


def test_bench_qemu_finds_a_built_qemu_and_builds_nothing(cache_home: Path) -> None:
    assert doctor.bench_qemu() is None
    entry = cache_home / "artifacts" / "qemu" / "0123456789abcdef0123"
    (entry / "share").mkdir(parents=True)
    (entry / "qemu-system-x86_64").write_text("")
    (entry / "meta.json").write_text(json.dumps({"artifacts": {
        "qemu": "qemu-system-x86_64", "bios": "share", "datadir": "share"}}))
    assert doctor.bench_qemu() == (entry / "qemu-system-x86_64", entry / "share")
    assert sorted(p.name for p in (cache_home / "artifacts").iterdir()) == ["qemu"]
