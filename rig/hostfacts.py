"""Facts about the build host that feed cache keys and commands."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess


@functools.cache
def compiler_version(cc: str = "gcc") -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout
    except FileNotFoundError:
        return "missing"
    return out.splitlines()[0] if out else "unknown"


def ccache() -> str | None:
    return shutil.which("ccache")


def jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)))
