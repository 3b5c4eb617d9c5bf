from __future__ import annotations

from rig import doctor


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
        if check.fix.startswith(doctor.APT):
            assert set(check.fix.split()[3:]) <= pkgs, check.name
