"""The whole scenario matrix `rig run` runs, in order.

Scenarios that share a topology share a boot and run in this order, so the
importer module reload comes after every hostile input of its guest.
"""

from __future__ import annotations

from rig.scenarios import hint_cases, hostile, race, revoke
from rig.scenarios.kit import Scenario


def full() -> list[Scenario]:
    cases: list[Scenario] = [*hint_cases.matrix(), *revoke.cases(), *hostile.cases(),
                             *race.cases(), hostile.ModuleReload()]
    names = [c.name for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"scenario names must be unique: {sorted(dup)}")
    return cases
