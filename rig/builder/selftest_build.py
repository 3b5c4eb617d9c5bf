"""Building the kernel's VFIO selftests for the guest: the programs of the tree
under test's tools/testing/selftests/vfio, static, with libvfio's tph-testdev
driver (selftest-driver/) added where the tree has none, and the library's
calloc_assert() where the tree calls it without defining it (7.2.13).

The sources are copied out of the tree (the selftests' make writes beside
them, and a user's tree is never written to), selftest-driver/'s patches
are applied to the copy, and make builds against the uAPI headers of the kernel just
built, so the programs test the uAPI of exactly that kernel.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from rig import proc, tools
from rig.builder import context, sources
from rig.builder.cache import file_digest, input_key
from rig.errors import BuildError, SourceError
from rig.hostfacts import compiler_version, jobs
from rig.paths import kernel_series_dir, repo_root

# Bump when the artifacts change in a way the inputs do not show.
RECIPE = "1"
VFIO = "tools/testing/selftests/vfio"
DRIVER_DIR = f"{VFIO}/lib/drivers/tph_testdev"
# What the vfio selftests' make reads, relative to the tree: the selftests'
# make rules and headers, the tools' own headers, and the arch name logic.
SOURCES = ("tools/testing/selftests/lib.mk", "tools/testing/selftests/kselftest.h",
           "tools/testing/selftests/kselftest_harness.h", "tools/testing/selftests/kselftest",
           VFIO, "tools/include", "tools/arch/x86/include", "scripts/subarch.include")
# The programs the guest gets (the bench runs them): the kernel's VFIO
# selftests that need one device, and the series' selftest of its uAPI
PROGRAMS = ("vfio_pci_device_test", "vfio_dma_mapping_test", "vfio_dma_mapping_mmio_test",
            "vfio_iommufd_setup_test", "vfio_pci_driver_test", "vfio_pci_dmabuf_tph_test")
# Where they are in the guest
GUEST_DIR = "/usr/lib/tphlab/selftests/vfio"
# uuid-dev: libvfio links -luuid, static here
STATIC_LIBS = (Path("/usr/lib/x86_64-linux-gnu/libuuid.a"),)


# The patches of selftest-driver/, by what their name says, and when each
# is applied to the copy: where the tree lacks what it adds.
FIX_PATCH = "Define-calloc_assert"
DRIVER_PATCH = "tph-testdev"


def patches() -> list[Path]:
    """selftest-driver/: a fix the library needs to build on 7.2.13, and
    libvfio's tph-testdev driver, as a VFIO maintainer would take them."""
    found = sorted((repo_root() / "selftest-driver").glob("*.patch"))
    for part in (FIX_PATCH, DRIVER_PATCH):
        if not any(part in p.name for p in found):
            raise SourceError(f"no patch named *{part}* in {repo_root() / 'selftest-driver'}",
                              fix="restore selftest-driver/ from git")
    return found


def key_inputs(kernel: context.Result) -> dict[str, Any]:
    return {"recipe": RECIPE, "kernel": kernel.key,
            "patches": [(p.name, file_digest(p)) for p in patches()],
            "compiler": compiler_version()}


def build(ctx: context.BuildContext, src: sources.Source,
          kernel: context.Result) -> context.Result:
    """The selftest programs of the kernel `kernel` was built from, from the
    cache or built."""
    tools.require(["gcc", "make", "patch"], "the VFIO selftests' build")
    for lib in STATIC_LIBS:
        if not lib.is_file():
            raise BuildError(f"{lib} is missing: the VFIO selftests link it statically",
                             fix="apt-get install uuid-dev")
    inputs = key_inputs(kernel)
    suffix = "" if kernel.meta.get("config", "default") == "default" else \
        f"-{kernel.meta['config']}"

    def produce(out: Path) -> dict[str, Any]:
        work, log, tree = context.source_tree(ctx, src, kernel_series_dir(),
                                                f"selftests-build{suffix}")
        ctx.progress.begin("selftests: tools/testing/selftests/vfio (static)")
        copy = stage_sources(tree, work / f"selftests{suffix}", log)
        driver = add_driver(copy, log)
        built = make(copy, kernel.artifacts["headers"] / "include", work, log)
        (out / "bin").mkdir()
        kept = [p for p in built if p.name in PROGRAMS]
        for prog in kept:
            shutil.copy2(prog, out / "bin" / prog.name)
        ctx.progress.done(f"{len(kept)} of {len(PROGRAMS)} programs ({driver})")
        return {"artifacts": {"bin": "bin"}, "inputs": inputs,
                "programs": sorted(p.name for p in kept), "driver": driver}

    return context.finish(ctx, f"selftests{suffix}", input_key(inputs), produce,
                          src.cacheable)


def stage_sources(tree: Path, dest: Path, log: Path) -> Path:
    """A fresh copy of what the build reads, in the tree's layout."""
    if not (tree / VFIO / "Makefile").is_file():
        raise SourceError(f"{tree} has no {VFIO}/Makefile",
                          fix="build a tree of the series' base, Linux 7.2, which has the "
                              "VFIO selftests")
    shutil.rmtree(dest, ignore_errors=True)
    for rel in SOURCES:
        src = tree / rel
        if src.is_dir():
            # tools/include links into include/: copy what the links point at
            shutil.copytree(src, dest / rel, symlinks=False)
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
        else:
            raise SourceError(f"{tree / rel} is missing: the VFIO selftests need it",
                              fix="build a tree of Linux 7.2 or later")
    with log.open("a") as f:
        f.write(f"selftests: copied {', '.join(SOURCES)} from {tree} to {dest}\n")
    return dest


def add_driver(copy: Path, log: Path) -> str:
    """Apply each patch of selftest-driver/ the tree needs: the calloc_assert()
    fix where the library calls it and nothing defines it, the driver where
    the tree has no tph_testdev driver of its own. What was applied."""
    applied = []
    for patch in patches():
        if FIX_PATCH in patch.name and not _calloc_assert_undefined(copy):
            continue
        if DRIVER_PATCH in patch.name and (copy / DRIVER_DIR).is_dir():
            continue
        proc.run(["patch", "-p1", "--batch", "--forward", "-i", patch], cwd=copy, log=log,
                 what=f"applying {patch.name} to the tree's VFIO selftests",
                 fix=f"the tree's tools/testing/selftests/vfio no longer takes {patch.name}: "
                     "rebase the patch onto it")
        applied.append(patch.name)
    return "applied " + ", ".join(applied) if applied else "the tree's own library and driver"


def _calloc_assert_undefined(copy: Path) -> bool:
    """Whether libvfio calls calloc_assert() and no header of it defines it
    (Linux 7.2.13: its library does not build)."""
    lib = copy / VFIO / "lib"
    calls = any("calloc_assert(" in p.read_text() for p in lib.rglob("*.c"))
    defined = any(re.search(r"(define|\*)\s*calloc_assert\s*\(", p.read_text())
                  for p in lib.rglob("*.h"))
    return calls and not defined


def make(copy: Path, headers: Path, work: Path, log: Path) -> list[Path]:
    """make the programs static against `headers` (the kernel's uAPI); the
    programs built, in the Makefile's order."""
    out = work / "selftests-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    proc.run(["make", "-C", copy / VFIO, f"-j{jobs()}", f"OUTPUT={out}",
              f"KHDR_INCLUDES=-isystem {headers}", "EXTRA_CFLAGS=-static"],
             log=log, timeout=900, what="building the VFIO selftests",
             fix="see the log: the tree's VFIO selftests (or selftest-driver/'s driver) must "
                 "build against the kernel under test")
    built = [p for p in sorted(out.iterdir()) if p.is_file() and p.suffix == ""
             and p.stat().st_mode & 0o111]
    if not built:
        raise BuildError("the VFIO selftests' make built no program", log=str(log))
    return built
