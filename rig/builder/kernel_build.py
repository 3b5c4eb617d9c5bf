"""Building the guest kernel: tinyconfig plus the series' config fragment."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from rig import proc, tools
from rig.builder import api_probe, compilecache, context, kconfig, series, sources
from rig.builder.cache import file_digest, files_inputs, input_key, tree_digest
from rig.errors import BuildError, ConfigError, SourceError
from rig.hostfacts import compiler_version, jobs
from rig.paths import importer_dir, kernel_series_dir
from rig.progress import kbuild_step

# Bump when the artifacts change in a way the inputs do not show. 4: the
# .incbin guard (compilecache); a bzImage of an earlier recipe may hold the
# kernel of another build. 5: meta.json says the kernel's uts_version.
RECIPE = "5"
BASE_CONFIG = "tinyconfig"
IMAGE = "arch/x86/boot/bzImage"

# Kernel configurations as data: the fragments merged, in order, onto
# tinyconfig. Each is cached apart and has a build directory of its own, so
# switching between them rebuilds nothing.
CONFIGS: dict[str, tuple[str, ...]] = {
    "default": ("tphlab.config",),
    "debug": ("tphlab.config", "debug.config"),
    # KCSAN excludes KASAN, so it is not part of debug: the race scenarios
    # run under it (`rig run --kernel-config kcsan -k race`).
    "kcsan": ("tphlab.config", "kcsan.config"),
}


def fragments(config: str) -> list[Path]:
    if config not in CONFIGS:
        raise ConfigError(f"no kernel configuration {config!r}",
                          fix=f"pick one of: {', '.join(CONFIGS)}")
    paths = [kernel_series_dir() / name for name in CONFIGS[config]]
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"kernel config fragment {path} is missing",
                              fix=f"restore kernel-patches/{path.name} from git")
    return paths


def merged_fragment(config: str, work: Path) -> Path:
    """One fragment file holding the configuration's fragments in order."""
    parts = fragments(config)
    if len(parts) == 1:
        return parts[0]
    out = work / f"{config}.config"
    text = "".join(f"# --- {p.name}\n{p.read_text()}" for p in parts)
    if not out.is_file() or out.read_text() != text:
        out.write_text(text)
    return out


def importer_files() -> list[Path]:
    """The test importer's sources (an out-of-tree module, built with M=)."""
    root = importer_dir()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not any(p.name == "Kbuild" for p in files):
        raise SourceError(f"the test importer's sources are missing from {root}",
                          fix="restore importer/ from git (or set TPHLAB_REPO to a checkout)")
    return files


def key_inputs(src: sources.Source, config: str) -> dict[str, Any]:
    patches = context.series_for(src, kernel_series_dir())
    inputs: dict[str, Any] = {
        "recipe": RECIPE,
        "source": src.identity(),
        "series": context.series_key(patches),
        "importer": files_inputs(importer_files(), importer_dir()),
        "base_config": BASE_CONFIG,
        "compiler": compiler_version(),
        # What decides which sources ccache may serve (see compilecache).
        "incbin_guard": file_digest(compilecache.INCBIN_GUARD),
    }
    if config == "default":
        inputs["fragment"] = file_digest(fragments(config)[0])
    else:
        inputs["config"] = config
        inputs["fragments"] = [file_digest(p) for p in fragments(config)]
    return inputs


def make_args(tree: Path, bdir: Path) -> list[str]:
    """make in tree with objects in bdir, through ccache: its settings are
    command-line variables, which make exports to every recipe."""
    args = ["make", "-C", str(tree), f"O={bdir}", f"-j{jobs()}"]
    if compilecache.wrapper():
        args.append(f"CC={compilecache.compiler(incbin_guard=True)}")
        args += [f"{k}={v}" for k, v in compilecache.settings(tree).items()]
    return args


def build_dir(tree: Path, config: str = "default") -> Path:
    """A configuration's build directory: inside the tree, beside its sources
    (see compilecache), kept apart per configuration."""
    return tree / compilecache.build_dir_name("" if config == "default" else f"-{config}")


def preflight(src: sources.Source) -> None:
    """Before anything is built: a user's tree must carry the series' API."""
    if src.kind == "tree":
        api_probe.check(Path(src.location), f"--kernel-tree {src.location}")


def build(ctx: context.BuildContext, src: sources.Source,
          config: str = "default") -> context.Result:
    """The kernel of one configuration of CONFIGS, with the test importer built
    against it, from the cache or built."""
    tools.require(["gcc", "make", "flex", "bison", "bc", "perl", "rsync", "git", "tar"],
                   "the kernel build")
    preflight(src)
    inputs = key_inputs(src, config)
    key = input_key(inputs)
    suffix = "" if config == "default" else f"-{config}"

    def produce(out: Path) -> dict[str, Any]:
        work, log, tree = context.source_tree(ctx, src, kernel_series_dir(),
                                                f"kernel-build{suffix}")
        what = (f"--kernel-tree {tree}" if src.kind == "tree" else
                src.mails.describe() if src.mails is not None else "the kernel-patches/ series")
        api_probe.check(tree, what)
        bdir = build_dir(tree, config)
        configure(ctx, tree, bdir, merged_fragment(config, work), log)
        dotconfig = kconfig.parse((bdir / ".config").read_text())
        if dotconfig.get("CONFIG_MODULES") != "y":
            raise ConfigError("the kernel has CONFIG_MODULES off: the test importer is a "
                              "module", fix="set CONFIG_MODULES=y in the config fragment")
        compiled = compile_kernel(ctx, tree, bdir, ["bzImage", "modules"], log)
        version = uts_version(bdir)
        shutil.copy2(bdir / IMAGE, out / "bzImage")
        shutil.copy2(bdir / ".config", out / "config")
        arts = {"kernel": "bzImage", "config": "config", "headers": "headers",
                "modules": "modules"}
        proc.run([*make_args(tree, bdir), f"INSTALL_HDR_PATH={out / 'headers'}",
                  "headers_install"], log=log, what="kernel headers_install")
        proc.run([*make_args(tree, bdir), f"INSTALL_MOD_PATH={out / 'modules'}",
                  "modules_install"], log=log, what="kernel modules_install")
        build_importer(ctx, tree, bdir, work / f"importer{suffix}", out / "modules", log)
        # What the guest image takes from the kernel: a change that leaves the
        # uAPI headers and modules alone does not rebuild the image.
        guest_inputs = {name: tree_digest(out / arts[name]) for name in ("headers", "modules")}
        return {"artifacts": arts, "inputs": inputs, "source": src.describe(),
                "source_detail": src.detail(len(context.series_for(src,
                                                                      kernel_series_dir()))),
                "config": config,
                "guest_inputs": guest_inputs,
                "uts_version": version,
                "tree": str(tree), "build_dir": str(bdir), "steps": compiled.steps,
                "ccache": compiled.meta()}

    return context.finish(ctx, f"kernel{suffix}", key, produce, src.cacheable)


def uts_version(bdir: Path) -> str:
    """The version string of the kernel just linked, its `uname -v`: Kbuild
    writes it into include/generated/utsversion.h for every link (the build
    number and time make it one build's own, unless KBUILD_BUILD_VERSION and
    KBUILD_BUILD_TIMESTAMP fix both: the boot's check is then weaker)."""
    path = bdir / "include/generated/utsversion.h"
    m = re.search(r'^#define UTS_VERSION "(.*)"$', path.read_text() if path.is_file() else "",
                  re.M)
    if m is None:
        raise BuildError(f"no UTS_VERSION in {path} after the kernel build",
                         fix="the tree predates include/generated/utsversion.h (Linux 6.1): "
                             "build a tree of the series' base, Linux 7.2")
    return m.group(1)


def build_importer(ctx: context.BuildContext, tree: Path, bdir: Path, work: Path,
                   mod_path: Path, log: Path) -> None:
    """make M= the test importer against the kernel just built; install it with
    the kernel's own modules (lib/modules/VERSION/updates)."""
    ctx.progress.begin("kernel: test importer (make M=)")
    work.mkdir(parents=True, exist_ok=True)
    # A copy keeps objects out of the repository; a source is copied only when
    # its content changed, with the copy's time now (not the source's, which
    # may be older than the objects of the last build), so make rebuilds it
    # only then.
    wanted = {p.relative_to(importer_dir()) for p in importer_files()}
    for rel in wanted:
        dest = work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.is_file() or file_digest(dest) != file_digest(importer_dir() / rel):
            shutil.copy(importer_dir() / rel, dest)
    make = [*make_args(tree, bdir), f"M={work}"]
    proc.run([*make, "modules"], log=log, what="building the test importer",
             fix="see the log: importer/ must build against the kernel under test "
                 "(it needs dma_buf_get_pci_tph and pcie_tph_enabled_req_type)")
    proc.run([*make, f"INSTALL_MOD_PATH={mod_path}", "modules_install"], log=log,
             what="installing the test importer")
    if not any(mod_path.rglob("tph_importer.ko")):
        raise ConfigError("make M= built no tph_importer.ko", log=str(log),
                          fix="check importer/Kbuild")
    ctx.progress.done("tph_importer.ko")



def configure(ctx: context.BuildContext, tree: Path, bdir: Path, fragment: Path,
              log: Path, strict: bool = True, force: bool = False) -> None:
    """tinyconfig + fragment + olddefconfig, redone only when an input changed.

    strict: every option of the fragment must survive (off for a commit in
    the middle of the series, where later patches' options do not exist yet).
    """
    state_path = bdir / "tphlab-config.json"
    wanted = {"base": BASE_CONFIG, "fragment": file_digest(fragment), "tree": str(tree)}
    if not force and (bdir / ".config").is_file() and series.read_state(state_path) == wanted:
        return
    bdir.mkdir(parents=True, exist_ok=True)
    ctx.progress.begin(f"kernel: {BASE_CONFIG} + {fragment.name}")
    state_path.unlink(missing_ok=True)
    make = make_args(tree, bdir)
    proc.run([*make, BASE_CONFIG], log=log, what=f"make {BASE_CONFIG}")
    proc.run([tree / "scripts/kconfig/merge_config.sh", "-m", "-O", bdir, bdir / ".config",
              fragment], cwd=tree, log=log, what="merge_config.sh", error=ConfigError)
    proc.run([*make, "olddefconfig"], log=log, what="make olddefconfig", error=ConfigError)
    if strict:
        kconfig.check_files(fragment, bdir / ".config")
    series.write_state(state_path, wanted)
    ctx.progress.done("every option of the fragment is set as asked" if strict else "configured")


def compile_kernel(ctx: context.BuildContext, tree: Path, bdir: Path, targets: list[str],
                   log: Path) -> compilecache.Compiled:
    """Run make with a step count; return how many steps it took and ccache's hits."""
    estimate = _read_estimate(bdir)
    ctx.progress.begin(f"kernel: make {' '.join(targets)}")
    before = compilecache.stats()
    count = [0]

    def on_line(line: str) -> None:
        if kbuild_step(line):
            count[0] += 1
            total = max(estimate, count[0]) if estimate else None
            ctx.progress.step(count[0], total, line.split()[-1][-60:])

    proc.run([*make_args(tree, bdir), *targets], log=log, on_line=on_line, timeout=5400,
             what="kernel build", fix="see the log; a patch of kernel-patches/ may not compile")
    if count[0] > estimate:
        (bdir / "tphlab-steps").write_text(str(count[0]))
    done = compilecache.counted(before, count[0])
    ctx.progress.done(done.describe("0 steps"))
    return done


def _read_estimate(bdir: Path) -> int:
    try:
        return int((bdir / "tphlab-steps").read_text())
    except (FileNotFoundError, ValueError):
        return 0
