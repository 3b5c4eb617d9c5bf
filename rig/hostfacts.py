"""Facts about the build host that feed cache keys and commands."""

from __future__ import annotations

import functools
import os

from rig import proc
from rig.errors import ToolError


@functools.cache
def compiler_version(cc: str = "gcc") -> str:
    try:
        out = proc.run_captured([cc, "--version"], timeout=30).stdout
    except ToolError:
        return "missing"
    return out.splitlines()[0] if out else "unknown"


def jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)))
