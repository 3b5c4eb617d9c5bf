"""The whole scenario matrix `rig run` runs, in order.

Scenarios that share a topology share a boot and run in this order, so the
importer module reload comes after every hostile input of its guest.
"""

from __future__ import annotations

from rig.errors import RigError
from rig.guest.topology import Topology
from rig.scenarios import cpu_st, dmabuf_copy, hint_cases, hostile, iommu, race, revoke
from rig.scenarios.kit import Scenario


def full() -> list[Scenario]:
    cases: list[Scenario] = [*hint_cases.matrix(), *cpu_st.cases(), *revoke.cases(),
                             *dmabuf_copy.cases(),
                             *hostile.cases(), *race.cases(), hostile.ModuleReload(),
                             *iommu.cases()]
    names = [c.name for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"scenario names must be unique: {sorted(dup)}")
    return cases


# The kernel's VFIO selftests (rig.scenarios.selftests): minutes under TCG,
# where the driver test maps 1 GiB per case. `rig run -K` takes this pattern.
SELFTESTS = "selftest-*"


def without_selftests() -> list[Scenario]:
    """The matrix of TPH scenarios: everything but the kernel's selftests (the
    bench's figures time this, as they did before the selftests existed)."""
    return [c for c in full() if not c.name.startswith("selftest-")]


def topologies() -> list[tuple[Topology, list[str]]]:
    """Every topology the matrix boots, in the order it boots them, with the
    names of its scenarios (`rig boot --topology NAME` boots any of them)."""
    out: dict[str, tuple[Topology, list[str]]] = {}
    for c in full():
        topo, names = out.setdefault(c.topo.name, (c.topo, []))
        if topo != c.topo:
            raise ValueError(f"two topologies are named {topo.name}: {topo} and {c.topo}")
        names.append(c.name)
    return list(out.values())


def topology(name: str) -> Topology:
    """The matrix's topology called `name`; RigError naming them all if none is."""
    for topo, _ in topologies():
        if topo.name == name:
            return topo
    names = ", ".join(t.name for t, _ in topologies())
    raise RigError(f"--topology {name}: the matrix has no such topology",
                   fix=f"pick one of: {names} (rig boot --list-topologies describes them)")
