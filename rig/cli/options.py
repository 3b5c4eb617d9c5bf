"""Command-line options shared by the command groups, and the build request they make."""

from __future__ import annotations

import argparse

from rig.builder import artifacts, kernel_build, sources
from rig.guest import kvm
from rig.progress import Progress


def add_source_args(p: argparse.ArgumentParser) -> None:
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
        names = [f"--{comp}-patches", "--patches"] if comp == "kernel" else [f"--{comp}-patches"]
        g.add_argument(*names, dest=f"{comp}_patches", metavar="LIST",
                       help=f"take only these patches of --{comp}-series, as b4 am -P: "
                            "1-3, 1,3, 2- (lists and ranges)")


def add_variant_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("build variants (each cached apart)")
    g.add_argument("--kernel-config", choices=tuple(kernel_build.CONFIGS), default="default",
                   help="guest kernel configuration: default, or debug (lockdep, KASAN, "
                        "DEBUG_LIST, DEBUG_ATOMIC_SLEEP)")
    g.add_argument("--sanitize", action="store_true",
                   help="QEMU built by clang with libFuzzer, AddressSanitizer and UBSan, "
                        "and line counters in the device (rig fuzz device)")


def add_build_args(p: argparse.ArgumentParser) -> None:
    add_source_args(p)
    add_variant_args(p)


def source(args: argparse.Namespace, comp: sources.Component) -> sources.Source:
    return sources.resolve(comp, getattr(args, f"{comp}_tree", None),
                           getattr(args, f"{comp}_tarball", None),
                           getattr(args, f"{comp}_sha256", None),
                           series=getattr(args, f"{comp}_series", None),
                           patches=getattr(args, f"{comp}_patches", None))


def build_request(args: argparse.Namespace, what: str) -> artifacts.Request:
    """The build the options ask for; sources are resolved (and user trees read) here."""
    wants_qemu, wants_kernel = what in ("qemu", "all"), what in ("kernel", "image", "all")
    return artifacts.Request(
        what,
        source(args, "qemu") if wants_qemu else None,
        source(args, "kernel") if wants_kernel else None,
        getattr(args, "kernel_config", "default"),
        getattr(args, "sanitize", False),
        getattr(args, "force", False))


def choose_accel(wanted: str, progress: Progress, arts: artifacts.Artifacts) -> kvm.Accel:
    """KVM only when a test vCPU runs and the bench's QEMU starts under it.

    `--accel kvm` without a usable KVM is an AccelError (exit 2) saying why;
    only `auto` takes TCG instead, and says why.
    """
    accel = kvm.choose(wanted, arts.qemu, arts.datadir)
    progress.note(f"accelerator: {accel.name} ({accel.reason})")
    return accel
