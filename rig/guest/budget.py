"""The machine's budget of running vCPUs, shared by every rig on it.

A TCG vCPU keeps a host core busy. Runs that share a cache (and so a
machine) take slots from one budget, by default one per host core, before
they boot a guest: a run that finds the budget spent waits for a slot (and
says so) instead of overcommitting the host, where guests would stall and
report it. Slots are lock files in the cache (flock), so a run that dies
gives its slots back with its file descriptors.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from rig.errors import GuestError
from rig.paths import cache_root

BUDGET_ENV = "TPHLAB_VCPUS"
POLL = 0.2


def size() -> int:
    """Slots in the budget: $TPHLAB_VCPUS, else the host cores this process may use."""
    value = os.environ.get(BUDGET_ENV, "")
    if value:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise GuestError(f"{BUDGET_ENV}={value!r} is not a number of vCPUs",
                             fix=f"set {BUDGET_ENV} to a positive integer, or unset it")
        return n
    return max(1, len(os.sched_getaffinity(0)))


def _try_take(paths: list[Path], want: int) -> list[IO[str]] | None:
    """All-or-nothing: `want` slot files locked, or none (no two runs deadlock
    each holding part of what the other needs)."""
    held: list[IO[str]] = []
    for path in paths:
        f: IO[str] = path.open("a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        held.append(f)
        if len(held) == want:
            return held
    for f in held:
        f.close()
    return None


@contextmanager
def vcpus(count: int, on_wait: Callable[[str], None] | None = None,
          timeout: float = 3600.0, root: Path | None = None) -> Iterator[int]:
    """Hold `count` slots (at most the whole budget) while the block runs."""
    total = size()
    want = max(1, min(count, total))
    d = (root or cache_root()) / "vcpu-budget"
    d.mkdir(parents=True, exist_ok=True)
    paths = [d / f"slot-{i}" for i in range(total)]
    deadline = time.monotonic() + timeout
    said = False
    while True:
        held = _try_take(paths, want)
        if held is not None:
            break
        if not said and on_wait is not None:
            on_wait(f"waiting for {want} of the machine's {total} vCPU slot(s), in use by "
                    "other guests")
            said = True
        if time.monotonic() > deadline:
            raise GuestError(f"waited {timeout:.0f} s for {want} vCPU slot(s) of {total}",
                             fix=f"wait for the other rig runs to end, or raise {BUDGET_ENV}")
        time.sleep(POLL)
    with ExitStack() as stack:
        for f in held:
            stack.callback(f.close)
        yield want


__all__ = ["BUDGET_ENV", "size", "vcpus"]
