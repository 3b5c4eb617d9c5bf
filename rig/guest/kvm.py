"""Does KVM really work here? Create a VM and run a few instructions to find out.

/dev/kvm existing proves nothing: under nested virtualization it can open,
create VMs and then hang or abort on the first run. The probe runs a vCPU
through a port write and a `hlt` in a child process with a timeout.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rig.errors import AccelError
from rig.guest.qemu import QemuProcess

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_RUN = 0xAE80
KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5
PAGE = 0x1000
RESET_PAGE = 0xFFFFF000  # the x86 reset vector 0xfffffff0 lies in this page


def _probe() -> str:
    """Run in the child: returns "ok" or what failed."""
    fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    if fcntl.ioctl(fd, KVM_GET_API_VERSION) != 12:
        return "unexpected KVM API version"
    vm = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
    mem = mmap.mmap(-1, PAGE)
    # At the reset vector: mov al, 0x5a; out 0x10, al; hlt
    mem[0xFF0:0xFF5] = bytes([0xB0, 0x5A, 0xE6, 0x10, 0xF4])
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    region = struct.pack("IIQQQ", 0, 0, RESET_PAGE, PAGE, addr)
    fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region)
    vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
    size = fcntl.ioctl(fd, KVM_GET_VCPU_MMAP_SIZE)
    run = mmap.mmap(vcpu, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    fcntl.ioctl(vcpu, KVM_RUN)
    reason = struct.unpack_from("I", run, 8)[0]
    if reason != KVM_EXIT_IO:
        return f"vCPU exited with reason {reason}, not the port write"
    _, _, port, _, data_off = struct.unpack_from("BBHIQ", run, 32)
    if port != 0x10 or run[data_off] != 0x5A:
        return f"port write seen as port {port:#x} value {run[data_off]:#x}"
    fcntl.ioctl(vcpu, KVM_RUN)
    reason = struct.unpack_from("I", run, 8)[0]
    return "ok" if reason == KVM_EXIT_HLT else f"vCPU exited with reason {reason}, not hlt"


@dataclass(frozen=True)
class KvmStatus:
    usable: bool
    reason: str

    @property
    def accel(self) -> str:
        return "kvm" if self.usable else "tcg"


def detect(timeout: float = 5.0) -> KvmStatus:
    if not os.path.exists("/dev/kvm"):
        return KvmStatus(False, "/dev/kvm does not exist")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return KvmStatus(False, "/dev/kvm is not read/writable by this user")
    try:
        res = subprocess.run([sys.executable, "-m", "rig.guest.kvm"], capture_output=True,
                             text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return KvmStatus(False, f"a test vCPU did not come back within {timeout:.0f} s "
                                "(nested virtualization without working KVM?)")
    err = res.stderr.strip().splitlines()
    out = res.stdout.strip() or (err[-1] if err else f"exit {res.returncode}")
    if res.returncode == 0 and out == "ok":
        return KvmStatus(True, "a test VM ran a port write and hlt")
    return KvmStatus(False, f"test VM failed: {out}")


def qemu_accepts_kvm(qemu: Path, datadir: Path, wait: float = 3.0) -> KvmStatus:
    """Start the bench's QEMU paused under KVM: some hosts abort it at once.

    (Nested KVM here fails setting MSR 0x10a for -cpu host.) A QEMU still
    running after `wait` seconds is taken as accepting KVM.
    """
    argv = [str(qemu), "-machine", "q35", "-accel", "kvm", "-cpu", "host", "-L", str(datadir),
            "-nodefaults", "-display", "none", "-S", "-monitor", "none", "-serial", "none"]
    with tempfile.TemporaryDirectory(prefix="tphlab-kvm-") as tmp:
        log = Path(tmp) / "qemu.log"
        proc = QemuProcess.spawn(argv, log)
        if not proc.wait(wait):
            proc.stop()
            return KvmStatus(True, "a test VM ran a port write and hlt; QEMU starts under KVM")
        out = log.read_text(errors="replace").strip()
    last = out.splitlines()[-1] if out else f"exit {proc.returncode}"
    return KvmStatus(False, f"QEMU quits under KVM: {last}")


def verdict(qemu: Path | None, datadir: Path | None = None) -> KvmStatus:
    """What `--accel auto` decides: KVM only if a test vCPU runs and the bench's QEMU
    starts under it. qemu None (not built yet): the vCPU probe's finding alone,
    which does not confirm KVM."""
    st = detect()
    if st.usable and qemu is not None:
        st = qemu_accepts_kvm(qemu, datadir if datadir is not None else qemu.parent)
    return st


ACCEL_HELP = ("kvm: KVM or exit 2 saying why; auto (default): KVM if a guest runs under it "
              "here, else TCG, saying why; tcg: TCG")

# What to do when `--accel kvm` cannot have KVM.
FIX = ("use --accel tcg, or --accel auto (falls back to TCG and says why); for KVM check "
       "/dev/kvm's permissions (the kvm group, or .ci/kvm-udev) and that nested "
       "virtualization is enabled on the host")


@dataclass(frozen=True)
class Accel:
    """The accelerator guests run under, and why.

    auto: chosen by `--accel auto`, so a KVM guest that does not reach /init
    may still fall back to TCG; an explicit `--accel kvm` never does.
    """

    name: str        # "kvm" or "tcg"
    reason: str      # "asked for with --accel kvm", or "auto: <the finding>"
    auto: bool = False

    def fallen_back(self, why: str) -> Accel:
        return Accel("tcg", f"auto: {why}", auto=True)


def choose(wanted: str, qemu: Path, datadir: Path) -> Accel:
    """`--accel auto|kvm|tcg` to the accelerator: kvm is KVM or an AccelError (exit 2)."""
    if wanted == "tcg":
        return Accel("tcg", "asked for with --accel tcg")
    st = verdict(qemu, datadir)
    if wanted == "kvm":
        if not st.usable:
            raise AccelError(f"--accel kvm: KVM is not usable here: {st.reason}", fix=FIX)
        return Accel("kvm", "asked for with --accel kvm")
    return Accel(st.accel, f"auto: {st.reason}", auto=True)


if __name__ == "__main__":
    try:
        print(_probe())
    except OSError as exc:
        print(f"{exc.strerror} ({exc.__class__.__name__})")
        raise SystemExit(1) from exc
