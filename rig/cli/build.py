"""`rig build`, `rig src`, `rig export`, `rig keys`, `rig check`, `rig doctor`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, cast

from rig import doctor
from rig.builder import artifacts, context, kernel_build, qemu_build, sources, srctree
from rig.builder.cache import input_key
from rig.checks import kernel_series, qemu_series
from rig.cli import options
from rig.progress import Progress


def cmd_build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    built = artifacts.build(options.build_request(args, args.component), Progress())
    total = time.monotonic() - started
    if args.json:
        doc: dict[str, Any] = {"seconds": round(total, 2), "components": {}}
        for name, r in built.results.items():
            doc["components"][name] = {
                "key": r.key, "cached": r.cached, "seconds": round(r.seconds, 2),
                "entry": str(r.entry), "source": r.meta.get("source"),
                "artifacts": {k: str(v) for k, v in r.artifacts.items()}}
        print(json.dumps(doc, indent=2))
    else:
        for name, r in built.results.items():
            how = "cached" if r.cached else f"built in {r.seconds:.1f} s"
            print(f"{name:7} {how:18} {r.key}  {r.entry}")
        print(f"done in {total:.1f} s")
    return 0


def cmd_src(args: argparse.Namespace) -> int:
    comp = cast(sources.Component, args.component)
    dest = Path(args.dir or f"{comp}-src").resolve()
    ctx = context.BuildContext(Progress())
    with ctx.cache.locked(on_wait=ctx.progress.note):
        srctree.make_src(ctx, options.source(args, comp), dest)
    print(f"{dest}: branch tphlab. Edit, commit, then: rig export {comp} {dest}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    comp = cast(sources.Component, args.component)
    written = srctree.export(comp, Path(args.dir).resolve())
    for p in written:
        print(p)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    ctx = context.BuildContext(Progress())
    with ctx.cache.locked(on_wait=ctx.progress.note):
        if args.what == "kernel-series":
            kreports = kernel_series.run(ctx, options.source(args, "kernel"))
            print(kernel_series.render(kreports))
            return 0 if kreports and all(r.clean for r in kreports) else 1
        qreports = qemu_series.run(ctx, options.source(args, "qemu"))
        print(qemu_series.render(qreports))
        return 0 if qreports and all(r.clean for r in qreports) else 1


def cmd_keys(args: argparse.Namespace) -> int:
    """The build input keys, as NAME=KEY lines (for a CI cache key, $GITHUB_OUTPUT)."""
    keys = {
        "qemu": input_key(qemu_build.key_inputs(options.source(args, "qemu"), args.sanitize)),
        "kernel": input_key(kernel_build.key_inputs(options.source(args, "kernel"),
                                                   args.kernel_config)),
    }
    keys["all"] = input_key(keys)
    for name, key in keys.items():
        print(f"{name}={key}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    return doctor.run()


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("build", help="build QEMU, the kernel and the guest image (cached)")
    b.add_argument("component", nargs="?", choices=artifacts.COMPONENTS, default="all")
    b.add_argument("--json", action="store_true", help="print artifact paths and input hashes")
    b.add_argument("--force", action="store_true", help="rebuild even on a cache hit")
    options.add_build_args(b)
    b.set_defaults(func=cmd_build)
    s = sub.add_parser("src", help="a git tree at the pinned base with the series applied")
    s.add_argument("component", choices=("qemu", "kernel"))
    s.add_argument("dir", nargs="?", help="where (default: ./COMPONENT-src)")
    options.add_source_args(s)
    s.set_defaults(func=cmd_src)
    e = sub.add_parser("export", help="write a `rig src` tree's commits back as the series")
    e.add_argument("component", choices=("qemu", "kernel"))
    e.add_argument("dir")
    e.set_defaults(func=cmd_export)
    c = sub.add_parser("check", help="check a series as its maintainers would")
    c.add_argument("what", choices=("kernel-series", "qemu-series"))
    options.add_source_args(c)
    c.set_defaults(func=cmd_check)
    d = sub.add_parser("doctor", help="check host prerequisites and print the fixes")
    d.set_defaults(func=cmd_doctor)
    k = sub.add_parser("keys", help="print the build input keys (NAME=KEY), building nothing")
    options.add_build_args(k)
    k.set_defaults(func=cmd_keys)
