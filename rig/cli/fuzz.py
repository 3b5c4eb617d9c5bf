"""`rig fuzz device`: QEMU's generic-fuzz on tph-testdev, with coverage;
`rig fuzz uapi`: the uAPI and the importer under random concurrent use."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from rig.builder import artifacts, kernel_build
from rig.cli import options
from rig.errors import ConfigError
from rig.fuzz import coverage, device, reproducer, uapi
from rig.guest import kvm
from rig.paths import run_dir
from rig.progress import Progress
from rig.results import report


def sanitized_qemu(args: argparse.Namespace, progress: Progress) -> dict[str, Path]:
    """The sanitized fuzz build's artifacts (built or from the cache)."""
    request = dataclasses.replace(options.build_request(args, "qemu"), sanitize=True)
    built = artifacts.build(request, progress)
    return built.results["qemu"].artifacts


def cmd_fuzz_device(args: argparse.Namespace) -> int:
    if args.time <= 0 and not args.replay:
        raise ConfigError(f"--time {args.time:g}: the fuzzer needs some seconds",
                          fix="give --time a positive number of seconds")
    progress = Progress()
    arts = sanitized_qemu(args, progress)
    if args.replay:
        clean, out = reproducer.replay(Path(args.replay), arts["qemu"], arts["datadir"])
        print(out)
        print(f"{args.replay}: {'QEMU ended cleanly' if clean else 'reproduces: QEMU crashed'}")
        return 0 if clean else 1
    configs = tuple(args.config) if args.config else device.CONFIGS
    rundir = run_dir("fuzz-device")
    corpus_root = Path(args.corpus) if args.corpus else None
    result = device.run(arts["fuzz"], arts["qemu"], arts["datadir"], args.time, rundir,
                        progress, configs, corpus_root)
    print(device.render(result))
    doc: dict[str, object] = result.to_dict()
    if not args.no_coverage:
        progress.begin("fuzz device: replaying the corpora for line coverage")
        work = rundir / "coverage"
        for config in configs:
            corpus = corpus_root / config if corpus_root else device.corpus_dir(config)
            coverage.replay(arts["fuzz"], config, [corpus, device.seeds_dir(rundir, config)],
                            work)
        cov = coverage.measure(arts["fuzz"], work)
        progress.done(f"{cov.guest.percent:.1f}% of the guest-reachable lines")
        print(coverage.render(cov))
        doc["coverage"] = cov.to_dict()
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"run directory: {rundir}")
    return 1 if result.crashes else 0


def cmd_fuzz_uapi(args: argparse.Namespace) -> int:
    if args.ops <= 0 or not 1 <= args.threads <= 8:
        raise ConfigError(f"--ops {args.ops} --threads {args.threads}: the fuzz takes at least "
                          "one operation and 1 to 8 threads", fix="fix --ops or --threads")
    fuzz = uapi.case(args.topology, args.seed, args.ops, args.threads)
    progress = Progress()
    arts = artifacts.build(options.build_request(args, "all"), progress).guest()
    accel = options.choose_accel(args.accel, progress, arts)
    rundir = run_dir("fuzz-uapi")
    progress.note(f"fuzz uapi: {fuzz.summary}, kernel {args.kernel_config}, "
                  f"topology {args.topology}")
    run = uapi.run(arts, accel, fuzz, rundir)
    print(report.table(run, full=True))
    if args.json:
        Path(args.json).write_text(json.dumps(run.to_dict(), indent=1))
    print(f"run directory: {rundir}")
    return run.exit_code


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    f = sub.add_parser("fuzz", help="fuzz the device (QEMU's generic-fuzz)")
    fsub = f.add_subparsers(dest="fuzz_what", required=True)
    d = fsub.add_parser("device", help="generic-fuzz on tph-testdev's configurations, then "
                        "the line coverage of its corpus (exit 1 on a crash)")
    d.add_argument("--time", type=float, default=300.0, metavar="S",
                   help="seconds of fuzzing in all, shared among the configurations "
                        "(default 300)")
    d.add_argument("--config", action="append", choices=device.CONFIGS,
                   help="only this configuration (repeatable; default: all)")
    d.add_argument("--corpus", metavar="DIR",
                   help="keep the corpora here (DIR/CONFIG) instead of the cache")
    d.add_argument("--no-coverage", action="store_true",
                   help="skip the coverage replay")
    d.add_argument("--replay", metavar="REPRODUCER",
                   help="only replay a saved qtest reproducer on the sanitized QEMU")
    d.add_argument("--json", metavar="FILE")
    options.add_source_args(d)
    d.set_defaults(func=cmd_fuzz_device)
    u = fsub.add_parser("uapi", help="random concurrent uAPI and importer operations in a "
                        "guest: fails on a splat, a leaked dma-buf, a taint or a record no "
                        "DMA asked for")
    u.add_argument("--ops", type=int, default=100000, help="operations in all (default 100000)")
    u.add_argument("--seed", type=int, default=1,
                   help="fixes each thread's choices (not their interleaving)")
    u.add_argument("--threads", type=int, default=4, help="1..8 (default 4)")
    u.add_argument("--topology", default=uapi.DEFAULT_TOPOLOGY,
                   help=f"the topology of its guest (default {uapi.DEFAULT_TOPOLOGY})")
    u.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help=kvm.ACCEL_HELP)
    u.add_argument("--json", metavar="FILE")
    options.add_source_args(u)
    u.add_argument("--kernel-config", choices=tuple(kernel_build.CONFIGS), default="debug",
                   help="guest kernel configuration (default debug: KASAN, lockdep; kcsan "
                        "for data races)")
    u.set_defaults(func=cmd_fuzz_uapi)
