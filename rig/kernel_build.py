"""Building the guest kernel: tinyconfig plus the series' config fragment."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rig import buildstep, doctor, kconfig, proc, series, sources
from rig.cache import file_digest, files_inputs, input_key, tree_digest
from rig.errors import ConfigError
from rig.host import ccache, compiler_version, jobs
from rig.paths import kernel_series_dir, repo_root
from rig.progress import kbuild_step

# Bump when the artifacts change in a way the inputs do not show.
RECIPE = "2"
BASE_CONFIG = "tinyconfig"
IMAGE = "arch/x86/boot/bzImage"

# Kernel configurations as data: the fragments merged, in order, onto
# tinyconfig. Each is cached apart and has a build directory of its own, so
# switching between them rebuilds nothing.
CONFIGS: dict[str, tuple[str, ...]] = {
    "default": ("tphlab.config",),
    "debug": ("tphlab.config", "debug.config"),
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


def key_inputs(src: sources.Source, config: str) -> dict[str, Any]:
    patches = buildstep.series_for(src, kernel_series_dir())
    inputs: dict[str, Any] = {
        "recipe": RECIPE,
        "source": src.identity(),
        "series": files_inputs(patches, repo_root()),
        "base_config": BASE_CONFIG,
        "compiler": compiler_version(),
    }
    if config == "default":
        inputs["fragment"] = file_digest(fragments(config)[0])
    else:
        inputs["config"] = config
        inputs["fragments"] = [file_digest(p) for p in fragments(config)]
    return inputs


def make_args(tree: Path, bdir: Path) -> list[str]:
    args = ["make", "-C", str(tree), f"O={bdir}", f"-j{jobs()}"]
    cc = ccache()
    if cc:
        args.append(f"CC={cc} gcc")
    return args


def build(ctx: buildstep.BuildContext, src: sources.Source,
          config: str = "default") -> buildstep.Result:
    """The kernel of one configuration of CONFIGS, from the cache or built."""
    doctor.require(["gcc", "make", "flex", "bison", "bc", "perl", "rsync", "git", "tar"],
                   "the kernel build")
    inputs = key_inputs(src, config)
    key = input_key(inputs)
    suffix = "" if config == "default" else f"-{config}"

    def produce(out: Path) -> dict[str, Any]:
        work, log, tree = buildstep.source_tree(ctx, src, kernel_series_dir(),
                                                f"kernel-build{suffix}")
        bdir = work / f"build{suffix}"
        configure(ctx, tree, bdir, merged_fragment(config, work), log)
        dotconfig = kconfig.parse((bdir / ".config").read_text())
        targets = ["bzImage"] + (["modules"] if dotconfig.get("CONFIG_MODULES") == "y" else [])
        steps = compile_kernel(ctx, tree, bdir, targets, log)
        shutil.copy2(bdir / IMAGE, out / "bzImage")
        shutil.copy2(bdir / ".config", out / "config")
        arts = {"kernel": "bzImage", "config": "config", "headers": "headers"}
        proc.run([*make_args(tree, bdir), f"INSTALL_HDR_PATH={out / 'headers'}",
                  "headers_install"], log=log, what="kernel headers_install")
        if "modules" in targets:
            proc.run([*make_args(tree, bdir), f"INSTALL_MOD_PATH={out / 'modules'}",
                      "modules_install"], log=log, what="kernel modules_install")
            arts["modules"] = "modules"
        # What the guest image takes from the kernel: a change that leaves the
        # uAPI headers and modules alone does not rebuild the image.
        guest_inputs = {name: tree_digest(out / arts[name])
                        for name in ("headers", "modules") if name in arts}
        return {"artifacts": arts, "inputs": inputs, "source": src.describe(),
                "config": config,
                "guest_inputs": guest_inputs,
                "tree": str(tree), "build_dir": str(bdir), "steps": steps}

    return buildstep.finish(ctx, f"kernel{suffix}", key, produce)



def configure(ctx: buildstep.BuildContext, tree: Path, bdir: Path, fragment: Path,
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


def compile_kernel(ctx: buildstep.BuildContext, tree: Path, bdir: Path, targets: list[str],
                   log: Path) -> int:
    """Run make with a step count; return how many steps it took."""
    estimate = _read_estimate(bdir)
    ctx.progress.begin(f"kernel: make {' '.join(targets)}")
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
    ctx.progress.done(f"{count[0]} steps")
    return count[0]


def _read_estimate(bdir: Path) -> int:
    try:
        return int((bdir / "tphlab-steps").read_text())
    except (FileNotFoundError, ValueError):
        return 0
