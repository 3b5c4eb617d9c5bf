"""`rig doctor`: is this host ready, and if not, the command that fixes it."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rig import proc
from rig.builder import qemu_build, sources
from rig.builder.cache import Cache, input_key
from rig.errors import RigError
from rig.guest import kvm
from rig.paths import DATA_DIR, cache_root
from rig.tools import APT, TOOL_PACKAGES


def apt_packages() -> list[str]:
    text = (DATA_DIR / "apt-packages.txt").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


@dataclass(frozen=True)
class Check:
    name: str
    probe: Callable[[], str | None]   # None when fine, else what is wrong
    fix: str
    required: bool = True


def _tool(name: str) -> Callable[[], str | None]:
    return lambda: None if shutil.which(name) else f"{name} not on PATH"


def _file(path: str) -> Callable[[], str | None]:
    return lambda: None if Path(path).exists() else f"{path} missing"


def _pkgconfig(name: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        if not shutil.which("pkg-config"):
            return "pkg-config not on PATH"
        try:
            ok = proc.run_captured(["pkg-config", "--exists", name], timeout=30).returncode == 0
        except RigError as exc:
            return exc.message
        return None if ok else f"pkg-config finds no {name}"
    return probe


def _static_busybox() -> str | None:
    if not Path("/bin/busybox").is_file():
        return "/bin/busybox missing"
    try:
        out = proc.run_captured(["ldd", "/bin/busybox"], timeout=30)
    except RigError as exc:
        return exc.message
    return None if "not a dynamic executable" in out.stdout + out.stderr else \
        "/bin/busybox is dynamically linked"


def _python(dist: str, minimum: tuple[int, ...] = ()) -> Callable[[], str | None]:
    def probe() -> str | None:
        try:
            ver = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return f"python package {dist} not installed"
        nums = tuple(int(x) for x in ver.split(".")[:len(minimum)] if x.isdigit())
        if minimum and nums < minimum:
            return f"{dist} {ver} is older than {'.'.join(map(str, minimum))}"
        return None
    return probe


def bench_qemu() -> tuple[Path, Path] | None:
    """The built bench QEMU (binary, firmware dir) in the cache, building nothing.

    The one `rig run` would use with the default sources, else the newest
    QEMU built (another source); None when no QEMU is built yet.
    """
    cache = Cache(cache_root())
    entries = []
    try:
        key = input_key(qemu_build.key_inputs(sources.resolve("qemu"), False))
        entries.append(cache.lookup("qemu", key))
    except (RigError, OSError, subprocess.SubprocessError):
        pass   # no default source here: any QEMU built from another will do
    metas = sorted((cache.root / "artifacts" / "qemu").glob("*/meta.json"),
                   key=lambda m: m.stat().st_mtime, reverse=True)
    entries += [cache.lookup("qemu", m.parent.name) for m in metas]
    for e in entries:
        arts = e.meta.get("artifacts", {}) if e is not None else {}
        if e is not None and "qemu" in arts and "datadir" in arts:
            return e.artifact(arts["qemu"]), e.artifact(arts["datadir"])
    return None


def _kvm() -> str | None:
    """The verdict `--accel auto` reaches: the vCPU probe, then the bench's QEMU under KVM."""
    built = bench_qemu()
    st = kvm.verdict(*built) if built else kvm.verdict(None)
    if not st.usable:
        return (f"{st.reason}; `--accel auto` runs guests under TCG (slower), `--accel kvm` "
                "exits 2")
    if built is None:
        return (f"{st.reason}, but the bench's QEMU is not built yet, so KVM is not confirmed: "
                "`--accel auto` checks that QEMU starts under KVM at run time")
    return None


PIP = "pip install -e '.[test]' (or ./tphlab setup)"

CHECKS: list[Check] = [
    Check("C compiler (gcc)", _tool("gcc"), f"{APT} {TOOL_PACKAGES['gcc']}"),
    Check("make", _tool("make"), f"{APT} {TOOL_PACKAGES['make']}"),
    Check("ninja", _tool("ninja"), f"{APT} {TOOL_PACKAGES['ninja']}"),
    Check("pkg-config", _tool("pkg-config"), f"{APT} {TOOL_PACKAGES['pkg-config']}"),
    Check("flex", _tool("flex"), f"{APT} {TOOL_PACKAGES['flex']}"),
    Check("bison", _tool("bison"), f"{APT} {TOOL_PACKAGES['bison']}"),
    Check("bc", _tool("bc"), f"{APT} {TOOL_PACKAGES['bc']}"),
    Check("git", _tool("git"), f"{APT} {TOOL_PACKAGES['git']}"),
    Check("perl", _tool("perl"), f"{APT} {TOOL_PACKAGES['perl']}"),
    Check("cpio", _tool("cpio"), f"{APT} {TOOL_PACKAGES['cpio']}"),
    Check("rsync (kernel headers_install)", _tool("rsync"), f"{APT} {TOOL_PACKAGES['rsync']}"),
    Check("xz", _tool("xz"), f"{APT} {TOOL_PACKAGES['xz']}"),
    Check("glib-2.0 headers", _pkgconfig("glib-2.0"), f"{APT} libglib2.0-dev"),
    Check("slirp headers", _pkgconfig("slirp"), f"{APT} libslirp-dev"),
    Check("libfdt headers", _file("/usr/include/libfdt.h"), f"{APT} libfdt-dev"),
    Check("libelf headers", _pkgconfig("libelf"), f"{APT} libelf-dev"),
    Check("busybox (static)", _static_busybox, f"{APT} busybox-static"),
    Check("dropbear", _file("/usr/sbin/dropbear"), f"{APT} dropbear-bin"),
    Check("dropbearkey", _file("/usr/bin/dropbearkey"), f"{APT} dropbear-bin"),
    Check("qboot.rom firmware", _file("/usr/share/qemu/qboot.rom"), f"{APT} qemu-system-data"),
    Check("SeaBIOS (for the qtest)", _file("/usr/share/seabios/bios-256k.bin"), f"{APT} seabios"),
    Check("python: qemu.qmp", _python("qemu.qmp"), PIP),
    Check("python: paramiko", _python("paramiko"), PIP),
    Check("python: meson >= 1.5", _python("meson", (1, 5)), PIP),
    Check("python: pycotap (QEMU configure)", _python("pycotap"), PIP),
    Check("ccache (faster rebuilds)", _tool("ccache"), f"{APT} ccache", required=False),
    Check("sparse (kernel series check)", _tool("sparse"), f"{APT} sparse", required=False),
    Check("KVM usable", _kvm, "make /dev/kvm read/writable (the kvm group; on GitHub runners "
          ".ci/kvm-udev) and, in a VM, enable nested virtualization; not confirmed: `rig build "
          "qemu`, then `rig doctor` again; TCG works without KVM", required=False),
]


def run(checks: list[Check] | None = None, out: Callable[[str], None] = print) -> int:
    """Print each check; return 1 if a required one failed."""
    failed_required = False
    fixes: list[str] = []
    for check in checks if checks is not None else CHECKS:
        problem = check.probe()
        if problem is None:
            out(f"  ok    {check.name}")
            continue
        mark = "MISS " if check.required else "note "
        out(f"  {mark} {check.name}: {problem}\n          fix: {check.fix}")
        failed_required |= check.required
        if check.required and check.fix not in fixes:
            fixes.append(check.fix)
    if failed_required:
        out("\nmissing pieces; to fix them all:")
        apt = sorted({w for f in fixes if f.startswith(APT) for w in f.split()[3:]})
        if apt:
            out(f"  {APT} {' '.join(apt)}")
        for f in fixes:
            if not f.startswith(APT):
                out(f"  {f}")
        return 1
    out("\nhost ready")
    return 0
