"""Building QEMU with the tph-testdev series: x86_64 system emulator only."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from rig import proc, tools
from rig.builder import api_probe, compilecache, context, series, sources
from rig.builder.cache import file_digest, input_key
from rig.errors import ConfigError, ToolError
from rig.hostfacts import compiler_version
from rig.paths import DATA_DIR, cache_root, qemu_series_dir
from rig.progress import ninja_step

# The smallest configuration that builds with Debian's +ds tarball (no
# python/wheels, no firmware blobs, no dtc subproject), with only the
# devices of DEVICES (configure() adds --with-devices-x86_64).
CONFIGURE_FLAGS = [
    "--target-list=x86_64-softmmu",
    "--without-default-features",
    "--without-default-devices",
    "--enable-kvm",
    "--enable-tcg",
    "--enable-slirp",
    "--enable-fdt=system",
    "--disable-install-blobs",
    "--disable-werror",
    # Debug info level 1 (line tables and function names): backtraces and
    # sanitizer reports name file and line as with -g, and each file
    # compiles in about 15% less CPU time (measured on 80 QEMU files).
    "--extra-cflags=-g1",
]
# `rig build qemu --sanitize`: clang with libFuzzer, AddressSanitizer and
# UBSan (cached apart, in a build directory of its own). One build serves
# three uses: qemu-system-x86_64 for the register fuzz of tests/device (under
# qtest), qemu-fuzz-x86_64 for QEMU's generic-fuzz (rig fuzz device), and
# source-based coverage of the files of PROFILED, read by replaying a corpus
# (libFuzzer's own counters are edges, not lines). -O1, as ASan's
# documentation recommends: reports are the same and each file compiles in
# about half the CPU time of -O2 under the sanitizers.
SANITIZE_CC = "clang"
SANITIZE_FLAGS = ["--enable-fuzzing", "--enable-asan", "--enable-ubsan", "-Doptimization=1",
                  "--extra-ldflags=-fprofile-instr-generate"]
FUZZ_BINARY = "qemu-fuzz-x86_64"
# In the artifact at bin/, so that QEMU finds its firmware where it looks
# beside its binary (../share/qemu): share/qemu is share itself.
FUZZ_PATH = f"bin/{FUZZ_BINARY}"
# Counters only in these files (clang's -fprofile-list): the device, the TPH
# helpers and the ports they live in. Elsewhere no counter slows the fuzzer.
PROFILED = ("hw/misc/tph-testdev.c", "hw/pci/pcie.c", "hw/pci/msix.c",
            "hw/pci-bridge/pcie_root_port.c", "hw/pci-bridge/xio3130_upstream.c",
            "hw/pci-bridge/xio3130_downstream.c", "hw/pci/pci_host.c")
# Where a profiled QEMU writes its counters when LLVM_PROFILE_FILE does not
# say: nowhere, so that no run outside a coverage replay leaves files behind.
PROFILE_DEFAULT = "/dev/null"
DEVICES = DATA_DIR / "qemu-devices.mak"
# Bump when the artifacts change in a way the inputs do not show.
RECIPE = "7"
BINARY = "qemu-system-x86_64"
QTEST = "tests/qtest/tph-testdev-test"
# The lock file meson (1.5 and later) writes into the source tree's subprojects/.
WRAPLOCK = "subprojects/.wraplock"
EDK2_BLOB = "pc-bios/edk2-x86_64-code.fd.bz2"
EDK2_LINE = "    unpack_edk2_blobs = bzip2.found()"


def prepare_source(tree: Path) -> str | None:
    """Turn off unpacking edk2 blobs when the tarball does not carry them."""
    if (tree / EDK2_BLOB).exists():
        return None
    mb = tree / "meson.build"
    text = mb.read_text()
    if EDK2_LINE not in text:
        return None
    mb.write_text(text.replace(EDK2_LINE, "    unpack_edk2_blobs = false"))
    return ("build: do not unpack edk2 blobs the source tarball lacks\n\n"
            "Debian's +ds tarball drops pc-bios/*.bz2; x86 machines here boot qboot.")


# Firmware the guests and the qtest need, and the host packages that carry
# it when the source tarball does not (Debian's +ds drops pc-bios blobs).
FIRMWARE = {
    "qboot.rom": (Path("/usr/share/qemu"), "qemu-system-data"),
    "kvmvapic.bin": (Path("/usr/share/qemu"), "qemu-system-data"),
    "linuxboot_dma.bin": (Path("/usr/share/qemu"), "qemu-system-data"),
    "bios-256k.bin": (Path("/usr/share/seabios"), "seabios"),
    "vgabios-stdvga.bin": (Path("/usr/share/seabios"), "seabios"),
}


def collect_firmware(tree: Path, dest: Path) -> None:
    """Copy each firmware file from the tree's pc-bios/ or, failing that, the system."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, (system_dir, package) in FIRMWARE.items():
        for d in (tree / "pc-bios", system_dir):
            if (d / name).is_file():
                shutil.copy2(d / name, dest / name)
                break
        else:
            raise ToolError(f"QEMU firmware {name} was not found in {tree / 'pc-bios'} or "
                            f"{system_dir}", fix=f"apt-get install -y {package}")


def profile_list() -> str:
    """clang's -fprofile-list of PROFILED."""
    return "".join(f"src:*/{f}\n" for f in PROFILED)


def profile_list_name() -> str:
    """The list's file name in the build directory, named by its content:
    compilers read it, and ccache, which does not, sees a new name."""
    return f"tphlab-profile-{hashlib.sha256(profile_list().encode()).hexdigest()[:12]}.list"


def configure_flags(sanitize: bool, bdir: Path | None = None) -> list[str]:
    """configure's flags; the profile list at its path in `bdir` (meson's
    compiler checks run elsewhere), or by name alone for the build's key."""
    if not sanitize:
        return list(CONFIGURE_FLAGS)
    plist = profile_list_name() if bdir is None else str(bdir / profile_list_name())
    return [*CONFIGURE_FLAGS, *SANITIZE_FLAGS,
            f"--extra-cflags=-fprofile-instr-generate={PROFILE_DEFAULT} -fcoverage-mapping "
            f"-fprofile-list={plist}"]


def compiler_of(sanitize: bool) -> str:
    return SANITIZE_CC if sanitize else "gcc"


def key_inputs(src: sources.Source, sanitize: bool = False) -> dict[str, Any]:
    patches = context.series_for(src, qemu_series_dir())
    return {
        "recipe": RECIPE,
        "source": src.identity(),
        "series": context.series_key(patches),
        "configure": configure_flags(sanitize),
        "devices": file_digest(DEVICES),
        "compiler": compiler_version(compiler_of(sanitize)),
        "python": sys.version.split()[0],
    }


def build(ctx: context.BuildContext, src: sources.Source,
          sanitize: bool = False) -> context.Result:
    """QEMU with the series, from the cache or built; sanitize: with ASan and UBSan."""
    tools.require([compiler_of(sanitize), "ninja", "pkg-config", "git", "tar"],
                  "the QEMU build")
    preflight(src)
    inputs = key_inputs(src, sanitize)
    key = input_key(inputs)
    suffix = "-sanitize" if sanitize else ""

    def produce(out: Path) -> dict[str, Any]:
        _work, log, tree = context.source_tree(ctx, src, qemu_series_dir(),
                                                f"qemu-build{suffix}", prepare_source)
        api_probe.check_qemu(tree, src.mails.describe() if src.mails is not None else
                             f"QEMU {src.describe()}")
        bdir = build_dir(tree, suffix)
        had_lock = (tree / WRAPLOCK).exists()
        configure(ctx, tree, bdir, log, configure_flags(sanitize, bdir), cc=compiler_of(sanitize),
                  files={profile_list_name(): profile_list()} if sanitize else {})
        targets = [BINARY, FUZZ_BINARY] if sanitize else [BINARY]
        # The qtest runs on the normal build; the sanitized one is for the fuzzer.
        if (tree / (QTEST + ".c")).is_file() and not sanitize:
            targets.append(QTEST)
        compiled = compile_targets(ctx, tree, bdir, targets, log)
        if not had_lock:
            # Meson's lock, left in the source tree: the user's git status
            # would show it, and the tree's content key would change with it.
            (tree / WRAPLOCK).unlink(missing_ok=True)
        shutil.copy2(bdir / BINARY, out / BINARY)
        collect_firmware(tree, out / "share")
        arts = {"qemu": BINARY, "bios": "share/qboot.rom", "datadir": "share"}
        if sanitize:
            (out / "bin").mkdir()
            shutil.copy2(bdir / FUZZ_BINARY, out / FUZZ_PATH)
            (out / "share" / "qemu").symlink_to(".")
            arts["fuzz"] = FUZZ_PATH
        if QTEST in targets:
            shutil.copy2(bdir / QTEST, out / "tph-testdev-test")
            arts["qtest"] = "tph-testdev-test"
        return {"artifacts": arts, "inputs": inputs, "source": src.describe(),
                "source_detail": src.detail(len(context.series_for(src,
                                                                      qemu_series_dir()))),
                "sanitize": sanitize, "tree": str(tree), "build_dir": str(bdir),
                "steps": compiled.steps, "ccache": compiled.meta()}

    return context.finish(ctx, f"qemu{suffix}", key, produce, src.cacheable)


def preflight(src: sources.Source) -> None:
    """Before anything is built: a user's tree must have the bench's device."""
    if src.kind == "tree":
        api_probe.check_qemu(Path(src.location), f"--qemu-tree {src.location}")


def build_dir(tree: Path, suffix: str = "") -> Path:
    """The build directory: inside the tree, beside its sources (see compilecache)."""
    return tree / compilecache.build_dir_name(suffix)


def devices_for(tree: Path, strict: bool = True) -> str:
    """DEVICES for the tree; minikconf rejects a symbol its Kconfig lacks.

    strict: every symbol must be defined in the tree's hw/**/Kconfig. Off
    for a commit in the middle of the series (as for the kernel's fragment),
    where tph-testdev's TPH_TESTDEV does not exist yet: it is left out.
    """
    defined: set[str] = set()
    for kconfig in tree.glob("hw/**/Kconfig"):
        defined.update(re.findall(r"^config (\w+)", kconfig.read_text(), re.M))
    keep, missing = [], []
    for line in DEVICES.read_text().splitlines():
        m = re.match(r"CONFIG_(\w+)=", line)
        if m is None or m.group(1) in defined:
            keep.append(line)
        else:
            missing.append(m.group(1))
    if strict and missing:
        raise ConfigError(f"{tree} defines no Kconfig symbol {', '.join(missing)}, which "
                          f"{DEVICES.name} asks for",
                          fix=f"apply the series to the tree (tph-testdev is TPH_TESTDEV), or "
                              f"fix the name in rig/data/{DEVICES.name}")
    return "\n".join(keep) + "\n"


def devices_flag(tree: Path, strict: bool = True) -> str:
    """--with-devices-x86_64 naming DEVICES.

    configure takes a name under the tree's configs/devices/x86_64-softmmu/;
    a relative path from there reaches a copy of DEVICES kept in the cache
    (named by its digest: the path, and so the configuration, stays the same
    for every checkout of the repository), and the tree is left as it is.
    """
    text = devices_for(tree, strict)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    copy = cache_root() / "qemu-devices" / f"tphlab-{digest}.mak"
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(copy)
    rel = os.path.relpath(copy.with_suffix(""), tree / "configs/devices/x86_64-softmmu")
    return f"--with-devices-x86_64={rel}"


def configure(ctx: context.BuildContext, tree: Path, bdir: Path, log: Path,
              flags: list[str] | None = None, strict: bool = True, cc: str = "gcc",
              files: dict[str, str] | None = None) -> None:
    """configure in bdir with the C compiler `cc` (and its C++ compiler
    beside, when not gcc), redone only when an input changed; strict as
    devices_for's. `files` are written into bdir first, for the flags to name."""
    flags = [*(CONFIGURE_FLAGS if flags is None else flags), devices_flag(tree, strict)]
    state_path = bdir / "tphlab-configure.json"
    if cc != "gcc":
        flags.append(f"--cxx={compilecache.compiler(cc + '++')}")
    cc = compilecache.compiler(cc)
    wanted = {"flags": flags, "tree": str(tree), "python": sys.executable, "cc": cc}
    if (bdir / "build.ninja").is_file() and series.read_state(state_path) == wanted:
        return
    shutil.rmtree(bdir, ignore_errors=True)
    bdir.mkdir(parents=True)
    # Inside the tree: git (and so the tree's content key) ignores it.
    (bdir / ".gitignore").write_text("# the rig's build directory\n*\n")
    for name, text in (files or {}).items():
        (bdir / name).write_text(text)
    ctx.progress.begin("qemu: configure")
    proc.run([tree / "configure", f"--python={sys.executable}", f"--cc={cc}", *flags],
             cwd=bdir, log=log, env=compilecache.settings(tree), timeout=600, what="QEMU configure",
             fix="run `rig doctor` for missing build dependencies")
    series.write_state(state_path, wanted)
    ctx.progress.done("configured")


def compile_targets(ctx: context.BuildContext, tree: Path, bdir: Path, targets: list[str],
                    log: Path) -> compilecache.Compiled:
    """Run ninja with its step count; return how many steps it took and ccache's hits."""
    ctx.progress.begin(f"qemu: ninja {' '.join(targets)}")
    before = compilecache.stats()
    steps = [0]

    def on_line(line: str) -> None:
        st = ninja_step(line)
        if st:
            steps[0] = st[1]
            ctx.progress.step(st[0], st[1])

    proc.run(["ninja", "-C", bdir, *targets], log=log, on_line=on_line, timeout=3600,
             env=compilecache.settings(tree),
             what="QEMU build", fix="see the log; a patch of qemu-device/ may not compile")
    done = compilecache.counted(before, steps[0])
    ctx.progress.done(done.describe("up to date"))
    return done
