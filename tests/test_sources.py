from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rig.builder import aptsrc, sources
from rig.errors import SourceError

PINS = {
    "qemu": {"version": "10.0.13",
             "debian": {"kind": "source", "package": "qemu", "version": "1:10.0.13+ds-0+deb13u1",
                        "suite": "trixie", "file": "qemu_10.0.13+ds.orig.tar.xz",
                        "sha256": "AB" * 32}},
    "kernel": {"version": "7.2.13"},
}


def test_debian_pin_is_the_default() -> None:
    src = sources.resolve("qemu", pins=PINS)
    assert src.kind == "debian"
    assert src.location == "qemu=1:10.0.13+ds-0+deb13u1"
    assert src.sha256 == "ab" * 32


def test_tarball_beats_debian_and_needs_a_sha(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no sha256 pinned") as exc:
        sources.resolve("qemu", tarball="/x/qemu.tar.xz", pins=PINS)
    assert exc.value.fix and "--qemu-sha256" in exc.value.fix
    src = sources.resolve("qemu", tarball="/x/qemu.tar.xz", sha256="cd" * 32, pins=PINS)
    assert (src.kind, src.sha256) == ("tarball", "cd" * 32)


def test_bad_sha256_text_is_refused() -> None:
    with pytest.raises(SourceError, match="not a sha256 hex digest"):
        sources.resolve("kernel", tarball="k.tar.xz", sha256="xyz", pins=PINS)


def test_tree_beats_everything_and_is_checked(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no configure there"):
        sources.resolve("qemu", tree=str(tmp_path), tarball="t", sha256="ab" * 32, pins=PINS)
    (tmp_path / "configure").write_text("#!/bin/sh\n")
    src = sources.resolve("qemu", tree=str(tmp_path), tarball="t", sha256="ab" * 32, pins=PINS)
    assert src.kind == "tree" and src.location == str(tmp_path.resolve())


def test_no_source_at_all_names_the_options() -> None:
    with pytest.raises(SourceError) as exc:
        sources.resolve("kernel", pins=PINS)
    assert exc.value.fix and "--kernel-tree" in exc.value.fix


def test_identity_separates_sources() -> None:
    a = sources.resolve("qemu", tarball="a.tar.xz", sha256="ab" * 32, pins=PINS)
    b = sources.resolve("qemu", tarball="a.tar.xz", sha256="cd" * 32, pins=PINS)
    assert a.identity() != b.identity()


def test_real_pins_load() -> None:
    pins = sources.load_pins()
    assert pins["qemu"]["debian"]["suite"] == "trixie"
    assert pins["kernel"]["debian"]["package"] == "linux-source-7.2"
    for comp in ("qemu", "kernel"):
        assert len(pins[comp]["debian"]["sha256"]) == 64


def _tarball(tmp_path: Path) -> tuple[Path, str]:
    p = tmp_path / "src.tar"
    p.write_bytes(b"not really a tarball")
    return p, hashlib.sha256(p.read_bytes()).hexdigest()


def test_local_tarball_with_right_sha_is_used(tmp_path: Path) -> None:
    p, digest = _tarball(tmp_path)
    src = sources.resolve("kernel", tarball=str(p), sha256=digest, pins=PINS)
    assert sources.fetch(src, tmp_path / "dl", tmp_path / "log", tmp_path / "apt") == p


def test_wrong_sha256_is_an_error_naming_both(tmp_path: Path) -> None:
    p, digest = _tarball(tmp_path)
    src = sources.resolve("kernel", tarball=str(p), sha256="0" * 64, pins=PINS)
    with pytest.raises(SourceError) as exc:
        sources.fetch(src, tmp_path / "dl", tmp_path / "log", tmp_path / "apt")
    assert "0" * 64 in exc.value.message and digest in exc.value.message


def test_missing_tarball_path(tmp_path: Path) -> None:
    src = sources.resolve("kernel", tarball=str(tmp_path / "nope.tar.xz"), sha256="0" * 64,
                          pins=PINS)
    with pytest.raises(SourceError, match="does not exist"):
        sources.fetch(src, tmp_path / "dl", tmp_path / "log", tmp_path / "apt")


def test_unreachable_url_leaves_no_partial_file(tmp_path: Path) -> None:
    src = sources.resolve("kernel", tarball="http://127.0.0.1:9/linux-7.2.13.tar.xz",
                          sha256="0" * 64, pins=PINS)
    dl = tmp_path / "dl"
    with pytest.raises(SourceError, match="cannot download") as exc:
        sources.fetch(src, dl, tmp_path / "log", tmp_path / "apt")
    assert exc.value.fix and "path" in exc.value.fix
    assert list(dl.iterdir()) == []


def test_extract_unpacks_the_top_directory(tmp_path: Path) -> None:
    import tarfile

    top = tmp_path / "pkg-1.0"
    top.mkdir()
    (top / "Makefile").write_text("all:\n")
    tb = tmp_path / "pkg.tar.gz"
    with tarfile.open(tb, "w:gz") as t:
        t.add(top, arcname="pkg-1.0")
    dest = sources.extract(tb, tmp_path / "out" / "src", tmp_path / "log")
    assert (dest / "Makefile").read_text() == "all:\n"


DEB822 = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_from_deb822_skips_security() -> None:
    found = aptsrc.parse_sources({"debian.sources": DEB822})
    assert [m.uri for m in found] == ["http://mirror.example/debian"]
    assert found[0].keyring == "/usr/share/keyrings/debian-archive-keyring.gpg"


def test_mirror_from_one_line_format_and_ubuntu_is_ignored() -> None:
    text = ("deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian/ trixie main\n"
            "deb http://archive.example/ubuntu noble main\n")
    found = aptsrc.parse_sources({"sources.list": text})
    assert found == [aptsrc.Mirror("http://m.example/debian", "/k.gpg")]


def test_no_debian_mirror_is_a_clear_error(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text("deb http://archive.example/ubuntu noble main\n")
    with pytest.raises(SourceError, match="no Debian mirror") as exc:
        aptsrc.system_mirror(etc)
    assert exc.value.fix and "--qemu-tarball" in exc.value.fix
