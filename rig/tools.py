"""Host programs the stages run: which are missing, and the package that has each."""

from __future__ import annotations

import shutil
from pathlib import Path

from rig.errors import ToolError

APT = "apt-get install -y"
# Host programs the builds run, and the Debian/Ubuntu package that has each.
TOOL_PACKAGES = {
    "gcc": "build-essential", "make": "build-essential", "ninja": "ninja-build",
    "pkg-config": "pkg-config", "flex": "flex", "bison": "bison", "bc": "bc", "git": "git",
    "perl": "perl", "cpio": "cpio", "rsync": "rsync", "xz": "xz-utils", "tar": "tar",
    "gzip": "gzip", "dpkg-deb": "dpkg", "apt-get": "apt", "ldd": "libc-bin",
}

def install_hint(tool: str) -> str:
    """The command that installs `tool`, for errors that find it missing."""
    pkg = TOOL_PACKAGES.get(Path(tool).name)
    return f"{APT} {pkg}" if pkg else "run `rig doctor` for the install command"


def require(tools: list[str], stage: str) -> None:
    """Fail before a stage starts if a program it runs is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pkgs = sorted({TOOL_PACKAGES.get(t, t) for t in missing})
        raise ToolError(f"{stage} needs {', '.join(missing)}, not found on PATH",
                        fix=f"{APT} {' '.join(pkgs)}")
