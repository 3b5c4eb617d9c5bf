"""Building the guest initramfs: busybox, dropbear, keys, tphctl, /init."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rig import proc, tools
from rig.builder import context, selftest_build
from rig.builder.cache import file_digest, files_inputs, input_key, tree_digest
from rig.errors import BuildError, ToolError
from rig.hostfacts import compiler_version
from rig.paths import guest_image_dir, importer_dir, repo_root

BUSYBOX = Path("/bin/busybox")
DROPBEAR = Path("/usr/sbin/dropbear")
DROPBEARKEY = Path("/usr/bin/dropbearkey")
HOST_KEY = "etc/dropbear/dropbear_ed25519_host_key"


def _need(path: Path, package: str) -> Path:
    if not path.is_file():
        raise ToolError(f"{path} is missing", fix=f"apt-get install {package}")
    return path


def _static_busybox() -> Path:
    bb = _need(BUSYBOX, "busybox-static")
    out = proc.run_captured(["ldd", bb], timeout=60, error=ToolError)
    if "not a dynamic executable" not in (out.stdout + out.stderr):
        raise ToolError(f"{bb} is dynamically linked (busybox, not busybox-static)",
                        fix="apt-get install busybox-static")
    return bb


def key_inputs(kernel: dict[str, Any], selftests: str) -> dict[str, Any]:
    """`kernel`: what the image takes from the kernel build (headers, modules
    digests); `selftests`: the digest of the selftest programs it carries (a
    kernel change that leaves them the same leaves the image alone)."""
    files = sorted(p for p in guest_image_dir().rglob("*") if p.is_file())
    files += sorted(p for p in importer_uapi().rglob("*.h"))
    return {
        "files": files_inputs(files, repo_root()),
        "busybox": file_digest(_static_busybox()),
        "dropbear": file_digest(_need(DROPBEAR, "dropbear-bin")),
        "kernel": kernel,
        "compiler": compiler_version(),
        "selftests": selftests,
    }


def importer_uapi() -> Path:
    """The test importer's uAPI headers (misc/tph_importer.h), which tphctl uses."""
    return importer_dir() / "include/uapi"


def shared_libs(binary: Path) -> list[Path]:
    """The libraries and loader `ldd` says `binary` needs."""
    out = proc.capture(["ldd", binary])
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def client_key(out: Path) -> None:
    """An ed25519 key pair for the rig: OpenSSH private key and public line."""
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                        serialization.PublicFormat.OpenSSH)
    path = out / "id_ed25519"
    path.write_bytes(priv)
    path.chmod(0o600)
    (out / "id_ed25519.pub").write_bytes(pub + b" tphlab-rig\n")


def build(ctx: context.BuildContext, kernel: context.Result,
          selftests: context.Result) -> context.Result:
    """The initramfs for guests of `kernel`, with the VFIO selftest programs
    of `selftests` (rig.builder.selftest_build) under its GUEST_DIR."""
    tools.require(["gcc", "cpio", "gzip", "ldd"], "the guest image build")
    inputs = key_inputs(kernel.meta.get("guest_inputs") or {"key": kernel.key},
                        tree_digest(selftests.artifacts["bin"]))
    key = input_key(inputs)

    def produce(out: Path) -> dict[str, Any]:
        log = ctx.log("image-build")
        log.write_text("")
        ctx.progress.begin("image: staging the initramfs")
        root = out / "root"
        stage_root(root, kernel, log)
        stage_selftests(root, selftests.artifacts["bin"])
        client_key(out)
        ssh = root / "root/.ssh"
        ssh.mkdir(parents=True, mode=0o700)
        shutil.copy2(out / "id_ed25519.pub", ssh / "authorized_keys")
        (ssh / "authorized_keys").chmod(0o600)
        (root / "etc/dropbear").mkdir(parents=True)
        proc.run([_need(DROPBEARKEY, "dropbear-bin"), "-t", "ed25519", "-f", root / HOST_KEY],
                 log=log, what="dropbearkey")
        pub = proc.capture([DROPBEARKEY, "-y", "-f", root / HOST_KEY])
        line = next((ln for ln in pub.splitlines() if ln.startswith("ssh-ed25519 ")), "")
        if not line:
            raise BuildError("dropbearkey -y printed no ssh-ed25519 public key", log=str(log))
        (out / "host_key.pub").write_text(" ".join(line.split()[:2]) + "\n")
        ctx.progress.done("staged")
        ctx.progress.begin("image: cpio + gzip")
        cpio(root, out / "initramfs.cpio.gz", log)
        size = (out / "initramfs.cpio.gz").stat().st_size
        shutil.rmtree(root)
        ctx.progress.done(f"{size / 1e6:.2f} MB")
        arts = {"initramfs": "initramfs.cpio.gz", "client_key": "id_ed25519",
                "host_key": "host_key.pub"}
        return {"artifacts": arts, "inputs": inputs, "size": size}

    return context.finish(ctx, "image", key, produce)


def stage_root(root: Path, kernel: context.Result, log: Path) -> None:
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp",
              "root", "lib", "lib64", "var/log", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(_static_busybox(), root / "bin/busybox")
    applets = proc.capture([root / "bin/busybox", "--list-full"]).split()
    for applet in applets:
        link = root / applet
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(root / "bin/busybox", link.parent))
    shutil.copy2(_need(DROPBEAR, "dropbear-bin"), root / "usr/sbin/dropbear")
    for lib in shared_libs(DROPBEAR):
        dest = root / lib.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), dest)
    src = guest_image_dir()
    shutil.copy2(src / "init", root / "init")
    (root / "init").chmod(0o755)
    shutil.copy2(src / "tphlab-bind", root / "usr/bin/tphlab-bind")
    (root / "usr/bin/tphlab-bind").chmod(0o755)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/shells").write_text("/bin/sh\n")
    (root / "root").chmod(0o700)
    tool = src / "tphctl.c"
    if not tool.is_file():
        raise BuildError(f"{tool} is missing: the guest would have no tphctl",
                         fix="run the rig from a tphlab checkout, or set TPHLAB_REPO to one")
    # The uAPI of the kernel under test, plus the importer's own header.
    headers = kernel.artifacts["headers"] / "include"
    proc.run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread",
              f"-I{headers}", f"-I{importer_uapi()}", "-o", root / "usr/bin/tphctl",
              tool], log=log,
             what="compiling tphctl", fix=f"fix {tool}")
    mods = kernel.artifacts.get("modules")
    if mods is not None and (mods / "lib/modules").is_dir():
        shutil.copytree(mods / "lib/modules", root / "lib/modules", symlinks=True)


def stage_selftests(root: Path, programs: Path) -> None:
    """The VFIO selftest programs, where the scenarios run them."""
    dest = root / selftest_build.GUEST_DIR.lstrip("/")
    dest.mkdir(parents=True)
    for prog in sorted(programs.iterdir()):
        shutil.copy2(prog, dest / prog.name)


def cpio(root: Path, dest: Path, log: Path) -> None:
    script = ('cd "$1" && find . -print0 | LC_ALL=C sort -z | '
              'cpio --null -o -H newc --reproducible --owner=0:0 --quiet | gzip -n -6 > "$2"')
    proc.run(["sh", "-c", script, "sh", root, dest], log=log, what="cpio",
             fix="apt-get install cpio gzip")
