"""The machine's budget of busy vCPUs, shared by every rig on it.

A busy TCG vCPU keeps a host core busy; an idle one (halted in the guest)
costs next to nothing: measured here, a 2-vCPU guest takes 0.10 of a core
idle and 1.15 cores while it runs one scenario at a time. So a guest takes
one slot of the budget while it boots or runs a scenario, and as many as
the scenario keeps busy at once (a race between two threads: two), before
it does; by default there is one slot per host core. A guest that finds the
budget spent waits for its slots (and says so) instead of overcommitting
the host, where guests would stall and report it.

Slots are lock files in the cache (flock), so a rig that dies gives its
slots back with its file descriptors, and rigs sharing a cache share the
budget. A guest asking for more slots gives back those it holds first and
takes all it needs at once: two guests each holding one and waiting for a
second cannot deadlock. The waits are fair: the first waiter holds a
turnstile lock until it has its slots and nobody takes a slot meanwhile,
so a guest waiting for two is not starved by others taking one at a time.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from rig.errors import GuestError
from rig.paths import cache_root

BUDGET_ENV = "TPHLAB_VCPUS"
POLL = 0.05
SAY_AFTER = 1.0     # seconds of waiting before on_wait is told


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


def _try_lock(path: Path) -> IO[str] | None:
    """`path` opened and locked (flock, exclusive), or None if another holds it."""
    f: IO[str] = path.open("a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _try_take(paths: list[Path], want: int) -> list[IO[str]] | None:
    """All-or-nothing: `want` slot files locked, or none."""
    held: list[IO[str]] = []
    for path in paths:
        f = _try_lock(path)
        if f is None:
            continue
        held.append(f)
        if len(held) == want:
            return held
    for f in held:
        f.close()
    return None


class Slots:
    """The slots one guest holds; hold() changes how many. Holds none at first
    and after release(); as a context manager, releases them at its end."""

    def __init__(self, on_wait: Callable[[str], None] | None = None,
                 timeout: float = 3600.0, root: Path | None = None) -> None:
        self.on_wait = on_wait
        self.timeout = timeout
        self.dir = (root or cache_root()) / "vcpu-budget"
        self._held: list[IO[str]] = []

    @property
    def count(self) -> int:
        return len(self._held)

    def hold(self, count: int) -> int:
        """Hold `count` slots (at least one, at most the whole budget), waiting
        for them in turn; return how many. GuestError after `timeout` s of
        waiting (holding none then)."""
        total = size()
        want = max(1, min(count, total))
        if want <= len(self._held):
            for f in self._held[want:]:
                f.close()
            del self._held[want:]
            return want
        self.release()
        self._held = self._take(want, total)
        return want

    def _take(self, want: int, total: int) -> list[IO[str]]:
        self.dir.mkdir(parents=True, exist_ok=True)
        paths = [self.dir / f"slot-{i}" for i in range(total)]
        started = time.monotonic()
        turn: IO[str] | None = None
        said = False
        try:
            while True:
                if turn is None:
                    turn = _try_lock(self.dir / "turnstile")
                if turn is not None:
                    held = _try_take(paths, want)
                    if held is not None:
                        return held
                waited = time.monotonic() - started
                if not said and self.on_wait is not None and waited >= SAY_AFTER:
                    self.on_wait(f"waiting for {want} of the machine's {total} vCPU slot(s), "
                                 "in use by other guests")
                    said = True
                if waited > self.timeout:
                    raise GuestError(f"waited {self.timeout:.0f} s for {want} vCPU slot(s) "
                                     f"of {total}", fix="wait for the other rig runs to end, "
                                                        f"or raise {BUDGET_ENV}")
                time.sleep(POLL)
        finally:
            if turn is not None:
                turn.close()

    def release(self) -> None:
        for f in self._held:
            f.close()
        self._held = []

    def __enter__(self) -> Slots:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["BUDGET_ENV", "Slots", "size"]
