"""Concurrent SETs against the importer's query: never a torn value.

tphctl's race step runs THREADS threads that SET in a loop while the
importer attaches (which asks the exporter for the hints), records the
answer and detaches, QUERIES times. Every field a thread writes derives
from (thread, iteration), as in tphctl's race_value(), so an answer made of
two SETs' halves matches no single SET and is reported.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from rig.guest.devices import Bench
from rig.guest.topology import Topology
from rig.scenarios import protocol
from rig.scenarios.findings import contract, dma, wire
from rig.scenarios.hint_cases import DEFAULT, IMPORTER_8BIT
from rig.scenarios.kit import Seen, errname, expect_ok, received_from
from rig.scenarios.protocol import ST, ST_EXT, RaceQueries, Set
from rig.scenarios.sequence import Seq
from rig.scenarios.tphctl_output import Steps


def written(t: int, k: int) -> tuple[int, int, int, int]:
    """(flags, ST, ST_EXT, PH) thread t writes at its k-th SET (tphctl's race_value)."""
    flags = ST | ST_EXT
    if k % 8 == 7:
        flags = ST
    if k % 8 == 3:
        flags = ST_EXT
    return flags, (t << 6 | (k & 0x3F)) & 0xFF, t << 12 | (k & 0xFFF), (t + k) & 3


def _one_set(threads: int, ext: bool, st: int, ph: int, st_only: bool = False) -> bool:
    """Did one SET write this tag of this namespace (with st_only: and no 16-bit tag)?"""
    t, k = (st >> 12, st & 0xFFF) if ext else (st >> 6, st & 0x3F)
    if t >= threads:
        return False
    flags, st8, st16, wph = written(t, k)
    if st_only and flags != ST:
        return False
    return bool(flags & (ST_EXT if ext else ST)) and (st16 if ext else st8) == st and wph == ph


def whole(threads: int, ext: bool, ret: int, st: int, ph: int) -> bool:
    """Could one SET alone have produced this query answer?"""
    if ret == -errno.EOPNOTSUPP:
        return True          # a SET without this namespace (every 8th of each thread)
    if ret != 0:
        return False
    # An extended importer that finds no 16-bit tag takes the 8-bit one (sent
    # without the TPH prefix), which only a SET of ST alone leaves it.
    return _one_set(threads, ext, st, ph) or (ext and _one_set(threads, False, st, ph, True))


@dataclass(frozen=True)
class Race:
    name: str
    topo: Topology
    threads: int = 4
    queries: int = 4000

    @property
    def busy_vcpus(self) -> int:
        """Its threads and the importer's queries keep every vCPU busy."""
        return self.topo.cpus

    @property
    def ext(self) -> bool:
        return self.topo.importer.get("ext-tph", "on") == "on"

    @property
    def summary(self) -> str:
        ns = "extended" if self.ext else "8-bit"
        return (f"{self.threads} threads SET while the importer queries ({ns}) "
                f"{self.queries} times: every answer is one whole SET")

    def command(self, bench: Bench) -> str:
        return (Seq().open(bench.exporter).get().set(*written(0, 0))
                .race(self.threads, self.queries).command())

    def check(self, seen: Seen) -> list[str]:
        steps = seen.read()
        bad = expect_ok(steps, Set) + expect_ok(steps, protocol.Race)
        race = steps.find(protocol.Race)
        obs = steps.find(RaceQueries)
        if race is None or obs is None:
            return [*bad, dma("the race step printed no result")]
        if race.set_errno:
            bad.append(contract(f"a concurrent SET failed with {errname(race.set_errno)}",
                                errname(0), errname(race.set_errno)))
        answers = obs.observed
        if len(answers) != self.queries:
            bad.append(dma(f"{len(answers)} queries ran, expected {self.queries}"))
        torn = [a for a in answers if not whole(self.threads, self.ext, *a)]
        if torn:
            bad.append(wire(f"{len(torn)} answer(s) match no single SET, e.g. "
                            f"(ret, ST, PH) {torn[:3]}"))
        values = {a for a in answers if a[0] == 0}
        if len(values) < 2:
            bad.append(dma(f"the importer saw {len(values)} distinct value(s) in "
                           f"{len(answers)} queries: the SETs did not run concurrently"))
        return bad

    def describe_set(self) -> str:
        return f"{self.threads} SET threads x {self.queries} importer queries"

    def received(self, seen: Seen) -> str:
        return received_from(seen, self._received)

    def _received(self, steps: Steps) -> str:
        race = steps.find(protocol.Race)
        obs = steps.find(RaceQueries)
        if race is None or obs is None:
            return "no result"
        answers = obs.observed
        distinct = len({a for a in answers if a[0] == 0})
        torn = sum(not whole(self.threads, self.ext, *a) for a in answers)
        return (f"{len(answers)} answers, {distinct} distinct values, {torn} torn, "
                f"{race.sets} SETs")


def cases() -> list[Race]:
    return [Race("race-set-vs-query-ext", DEFAULT),
            Race("race-set-vs-query-8bit", IMPORTER_8BIT)]
