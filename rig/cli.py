"""The `rig` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from rig import (
    bench,
    buildstep,
    doctor,
    guestcli,
    image_build,
    kcheck,
    kernel_build,
    qcheck,
    qemu_build,
    report,
    sources,
    srctree,
)
from rig.cache import input_key
from rig.errors import RigError
from rig.progress import Progress

COMPONENTS = ("qemu", "kernel", "image", "all")


def _source_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sources (default: the pins in rig/data/sources.toml)")
    for comp in ("qemu", "kernel"):
        g.add_argument(f"--{comp}-tree", metavar="DIR",
                       help=f"build this {comp} tree as is (series not applied)")
        g.add_argument(f"--{comp}-tarball", metavar="PATH_OR_URL",
                       help=f"{comp} release tarball (needs --{comp}-sha256)")
        g.add_argument(f"--{comp}-sha256", metavar="HEX", help="sha256 of the tarball")
        g.add_argument(f"--{comp}-series", metavar="DIR_OR_MBOX",
                       help=f"apply this {comp} series (patch files or an mbox, as b4 am or "
                            "a list archive gives it; the cover letter is skipped) on the "
                            "pinned base instead of the repository's")


def _variant_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("build variants (each cached apart)")
    g.add_argument("--kernel-config", choices=tuple(kernel_build.CONFIGS), default="default",
                   help="guest kernel configuration: default, or debug (lockdep, KASAN, "
                        "DEBUG_LIST, DEBUG_ATOMIC_SLEEP)")
    g.add_argument("--sanitize", action="store_true",
                   help="QEMU built with AddressSanitizer and UBSan")


def _build_args(p: argparse.ArgumentParser) -> None:
    _source_args(p)
    _variant_args(p)


def _source(args: argparse.Namespace, comp: sources.Component) -> sources.Source:
    return sources.resolve(comp, getattr(args, f"{comp}_tree", None),
                           getattr(args, f"{comp}_tarball", None),
                           getattr(args, f"{comp}_sha256", None),
                           series=getattr(args, f"{comp}_series", None))


def build_components(args: argparse.Namespace, what: str,
                     progress: Progress) -> dict[str, buildstep.Result]:
    """Build (or take from the cache) what `what` needs, in dependency order."""
    ctx = buildstep.BuildContext(progress, force=getattr(args, "force", False))
    results: dict[str, buildstep.Result] = {}
    wants_qemu, wants_kernel = what in ("qemu", "all"), what in ("kernel", "image", "all")
    # Sources first, and what a user's tree lacks, before anything is built.
    qsrc = _source(args, "qemu") if wants_qemu else None
    ksrc = _source(args, "kernel") if wants_kernel else None
    if qsrc is not None:
        qemu_build.preflight(qsrc)
    if ksrc is not None:
        kernel_build.preflight(ksrc)
    with ctx.cache.locked():
        ctx.cache.purge_partials()
        if qsrc is not None:
            results["qemu"] = qemu_build.build(ctx, qsrc, getattr(args, "sanitize", False))
        if ksrc is not None:
            results["kernel"] = kernel_build.build(ctx, ksrc,
                                                   getattr(args, "kernel_config", "default"))
        if what in ("image", "all"):
            results["image"] = image_build.build(ctx, results["kernel"])
    return results


def cmd_build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    progress = Progress()
    results = build_components(args, args.component, progress)
    total = time.monotonic() - started
    if args.json:
        doc: dict[str, Any] = {"seconds": round(total, 2), "components": {}}
        for name, r in results.items():
            doc["components"][name] = {
                "key": r.key, "cached": r.cached, "seconds": round(r.seconds, 2),
                "entry": str(r.entry), "source": r.meta.get("source"),
                "artifacts": {k: str(v) for k, v in r.artifacts.items()}}
        print(json.dumps(doc, indent=2))
    else:
        for name, r in results.items():
            how = "cached" if r.cached else f"built in {r.seconds:.1f} s"
            print(f"{name:7} {how:18} {r.key}  {r.entry}")
        print(f"done in {total:.1f} s")
    return 0


def cmd_src(args: argparse.Namespace) -> int:
    comp = cast(sources.Component, args.component)
    dest = Path(args.dir or f"{comp}-src").resolve()
    ctx = buildstep.BuildContext(Progress())
    with ctx.cache.locked():
        srctree.make_src(ctx, _source(args, comp), dest)
    print(f"{dest}: branch tphlab. Edit, commit, then: rig export {comp} {dest}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    comp = cast(sources.Component, args.component)
    written = srctree.export(comp, Path(args.dir).resolve())
    for p in written:
        print(p)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    ctx = buildstep.BuildContext(Progress())
    with ctx.cache.locked():
        if args.what == "kernel-series":
            kreports = kcheck.run(ctx, _source(args, "kernel"))
            print(kcheck.render(kreports))
            return 0 if kreports and all(r.clean for r in kreports) else 1
        qreports = qcheck.run(ctx, _source(args, "qemu"))
        print(qcheck.render(qreports))
        return 0 if qreports and all(r.clean for r in qreports) else 1


def cmd_keys(args: argparse.Namespace) -> int:
    """The build input keys, as NAME=KEY lines (for a CI cache key, $GITHUB_OUTPUT)."""
    keys = {
        "qemu": input_key(qemu_build.key_inputs(_source(args, "qemu"), args.sanitize)),
        "kernel": input_key(kernel_build.key_inputs(_source(args, "kernel"),
                                                   args.kernel_config)),
    }
    keys["all"] = input_key(keys)
    for name, key in keys.items():
        print(f"{name}={key}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    path = Path(args.report)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RigError(f"cannot read the run report {path}: {exc}",
                       fix="pass the file `rig run --json FILE` wrote") from exc
    print(report.markdown(doc))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    return doctor.run()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rig", description="tphlab: build, boot and check the "
                                "TPH dma-buf bench")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build QEMU, the kernel and the guest image (cached)")
    b.add_argument("component", nargs="?", choices=COMPONENTS, default="all")
    b.add_argument("--json", action="store_true", help="print artifact paths and input hashes")
    b.add_argument("--force", action="store_true", help="rebuild even on a cache hit")
    _source_args(b)
    _variant_args(b)
    b.set_defaults(func=cmd_build)
    s = sub.add_parser("src", help="a git tree at the pinned base with the series applied")
    s.add_argument("component", choices=("qemu", "kernel"))
    s.add_argument("dir", nargs="?", help="where (default: ./COMPONENT-src)")
    _source_args(s)
    s.set_defaults(func=cmd_src)
    e = sub.add_parser("export", help="write a `rig src` tree's commits back as the series")
    e.add_argument("component", choices=("qemu", "kernel"))
    e.add_argument("dir")
    e.set_defaults(func=cmd_export)
    c = sub.add_parser("check", help="check a series as its maintainers would")
    c.add_argument("what", choices=("kernel-series", "qemu-series"))
    _source_args(c)
    c.set_defaults(func=cmd_check)
    d = sub.add_parser("doctor", help="check host prerequisites and print the fixes")
    d.set_defaults(func=cmd_doctor)
    k = sub.add_parser("keys", help="print the build input keys (NAME=KEY), building nothing")
    _build_args(k)
    k.set_defaults(func=cmd_keys)
    m = sub.add_parser("summary", help="a `rig run --json` report as a Markdown summary")
    m.add_argument("report", metavar="RUN_JSON")
    m.set_defaults(func=cmd_summary)
    guestcli.add_parsers(sub, _build_args)
    bench.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RigError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
