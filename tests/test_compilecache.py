"""The compiler cache every build shares: its settings, counters and build directories."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from rig.builder import compilecache, kernel_build, qemu_build
from rig.errors import ConfigError

# `ccache --print-stats` of ccache 4.7, shortened.
PRINT_STATS = """\
autoconf_test\t0
cache_miss\t4
cache_size_kibibyte\t32
direct_cache_hit\t2
direct_cache_miss\t4
preprocessed_cache_hit\t1
preprocessed_cache_miss\t4
stats_updated_timestamp\t1764667000
"""


def test_the_counters_are_read_from_print_stats() -> None:
    got = compilecache.parse_stats(PRINT_STATS)
    assert got == compilecache.Stats(hits=3, misses=4)
    assert got.since(compilecache.Stats(1, 1)) == compilecache.Stats(2, 3)
    assert "2/5 compilations were hits (40%)" in compilecache.Stats(2, 3).describe()
    assert compilecache.parse_stats("garbage\nno tabs here\n") == compilecache.Stats(0, 0)


def test_a_run_says_its_steps_and_hits() -> None:
    run = compilecache.Compiled(120, compilecache.Stats(100, 20))
    assert run.describe("up to date") == \
        "120 steps; ccache: 100/120 compilations were hits (83%)"
    assert run.meta() == {"hits": 100, "misses": 20}
    assert compilecache.Compiled(0, None).describe("up to date") == "up to date"
    assert compilecache.Compiled(5, None).meta() == {}


def test_settings_live_in_the_rig_cache_unless_ccache_dir_is_set(
        cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CCACHE_DIR", raising=False)
    got = compilecache.settings(Path("/src/linux"))
    assert got["CCACHE_DIR"] == str(cache_home / "ccache")
    # The tree's paths relative, the working directory out of the hash: trees
    # share objects.
    assert got["CCACHE_BASEDIR"] == "/src/linux" and got["CCACHE_NOHASHDIR"] == "1"
    monkeypatch.setenv("CCACHE_DIR", "/ci/ccache")
    assert compilecache.settings(Path("/src/linux"))["CCACHE_DIR"] == "/ci/ccache"


def test_kernel_make_goes_through_ccache_with_its_settings(
        cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compilecache, "wrapper", lambda: "/usr/bin/ccache")
    args = kernel_build.make_args(Path("/t"), Path("/t/.tphlab-build"))
    assert f"CC=sh {compilecache.guard_script()} /usr/bin/ccache gcc" in args
    assert compilecache.guard_script().is_relative_to(cache_home), \
        "the same path from every checkout: kbuild rebuilds on a new command line"
    assert f"CCACHE_DIR={cache_home / 'ccache'}" in args and "CCACHE_BASEDIR=/t" in args
    monkeypatch.setattr(compilecache, "wrapper", lambda: None)
    args = kernel_build.make_args(Path("/t"), Path("/t/.tphlab-build"))
    assert not any(a.startswith(("CC=", "CCACHE")) for a in args), "no ccache: plain gcc"


def test_every_tree_builds_in_a_directory_of_its_own_inside_it() -> None:
    tree = Path("/src/linux")
    assert kernel_build.build_dir(tree) == tree / ".tphlab-build"
    assert kernel_build.build_dir(tree, "debug") == tree / ".tphlab-build-debug"
    assert qemu_build.build_dir(Path("/q")) == Path("/q/.tphlab-build")
    assert qemu_build.build_dir(Path("/q"), "-sanitize") == Path("/q/.tphlab-build-sanitize")


def test_two_trees_of_the_same_code_share_their_objects(
        tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The layout's point: a second tree at another path, and another depth,
    compiles from the cache; the tree's own include directories are absolute
    and so is a system one outside it (as meson passes QEMU's)."""
    monkeypatch.delenv("CCACHE_DIR", raising=False)
    system = tmp_path / "usr/include/lib-1.0"
    system.mkdir(parents=True)
    (system / "lib.h").write_text("#define Y 4\n")
    for name in ("a/deep/er", "b"):
        tree = tmp_path / name
        (tree / "inc").mkdir(parents=True)
        (tree / "inc/h.h").write_text("#define X 3\n")
        (tree / "f.c").write_text('#include "h.h"\n#include <lib.h>\n'
                                  'int f(void) { return X + Y; }\n')
        bdir = tree / compilecache.build_dir_name()
        bdir.mkdir()
        subprocess.run([*compilecache.compiler().split(), "-g", "-iquote", f"{tree}/inc",
                        "-isystem", str(system), "-c", str(tree / "f.c"), "-o", "f.o"],
                       cwd=bdir, check=True, env={**os.environ, **compilecache.settings(tree)})
    stats = compilecache.stats()
    assert stats == compilecache.Stats(hits=1, misses=1)


def test_a_kernel_source_with_incbin_is_compiled_not_taken_from_the_cache(
        tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """piggy.S as Kbuild makes it: the compressed kernel comes in by .incbin
    and the source says only its sizes. A new kernel of the same size must
    give a new object, not the last one's; other sources still hit."""
    monkeypatch.delenv("CCACHE_DIR", raising=False)
    bdir = tmp_path / "linux" / compilecache.build_dir_name()
    bdir.mkdir(parents=True)
    (bdir / "piggy.S").write_text('.section .rodata\nz_input_len = 4\n.incbin "vmlinux.bin"\n')
    (bdir / "f.c").write_text("int f(void) { return 3; }\n")
    cc = compilecache.compiler(incbin_guard=True).split()
    env = {**os.environ, **compilecache.settings(bdir.parent)}

    def build(blob: str, source: str) -> bytes:
        (bdir / "vmlinux.bin").write_text(blob)
        obj = Path(source).name.replace(".S", ".o").replace(".c", ".o")
        subprocess.run([*cc, "-Wp,-MMD,.dep.d", "-c", "-o", obj, source], cwd=bdir,
                       check=True, env=env)
        dumped = subprocess.run(["objcopy", "-O", "binary", "-j", ".rodata", obj,
                                 "/dev/stdout"], cwd=bdir, check=True, capture_output=True)
        return dumped.stdout

    # kernel/configs.c's shape: inline asm in a C file of the source tree, named
    # from the build directory with ../
    (bdir.parent / "configs.c").write_text(
        'asm(".section .rodata\\n.incbin \\"vmlinux.bin\\"\\n.previous");\n')
    (bdir / "plain.S").write_text(".section .rodata\n.ascii \"CCCC\"\n")
    assert build("AAAA", "piggy.S") == b"AAAA"
    assert build("BBBB", "piggy.S") == b"BBBB", "ccache gave back the last kernel's piggy.o"
    assert build("DDDD", "../configs.c") == b"DDDD"
    assert build("EEEE", "../configs.c") == b"EEEE"
    assert compilecache.stats() == compilecache.Stats(0, 0), "an .incbin source went to ccache"
    for _ in range(2):
        build("", "f.c")
        assert build("", "plain.S") == b"CCCC"
    assert compilecache.stats() == compilecache.Stats(hits=2, misses=2)


def test_qemu_is_configured_with_only_our_devices(cache_home: Path, tmp_path: Path) -> None:
    """--with-devices-x86_64 names a path from the tree's configs/devices/x86_64-softmmu/
    that reaches a copy of rig/data/qemu-devices.mak; the tree is not written."""
    tree = tmp_path / "qemu"
    (tree / "configs/devices/x86_64-softmmu").mkdir(parents=True)
    (tree / "hw/misc").mkdir(parents=True)
    symbols = re.findall(r"^CONFIG_(\w+)=y", qemu_build.DEVICES.read_text(), re.M)
    (tree / "hw/misc/Kconfig").write_text("".join(f"config {s}\n    bool\n" for s in symbols))
    flag = qemu_build.devices_flag(tree)
    assert flag == qemu_build.devices_flag(tree), "one path for one devices file"
    name = flag.split("=", 1)[1]
    mak = tree / "configs/devices/x86_64-softmmu" / f"{name}.mak"
    assert mak.resolve().read_text() == qemu_build.DEVICES.read_text()
    assert mak.resolve().is_relative_to(cache_home)
    assert "CONFIG_TPH_TESTDEV=y" in qemu_build.DEVICES.read_text()
    assert "--without-default-devices" in qemu_build.configure_flags(False)
    assert sorted(p.name for p in tree.rglob("*")) == ["Kconfig", "configs", "devices", "hw",
                                                        "misc", "x86_64-softmmu"]
    # A commit before the device's: its symbol is left out in the series check,
    # an error naming the file for a build (a typo must not drop a device).
    (tree / "hw/misc/Kconfig").write_text("".join(f"config {s}\n    bool\n" for s in symbols
                                                  if s != "TPH_TESTDEV"))
    early = qemu_build.devices_for(tree, strict=False)
    assert "TPH_TESTDEV" not in early and "CONFIG_Q35=y" in early
    with pytest.raises(ConfigError) as exc:
        qemu_build.devices_for(tree)
    assert "TPH_TESTDEV" in exc.value.message and "qemu-devices.mak" in (exc.value.fix or "")
