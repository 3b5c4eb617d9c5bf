"""Packing placements into machines: fewer guests to boot for the same scenarios.

A topology of the matrix is a placement: an exporter, an importer (and a
spare) below ports configured its way. Most of what tells topologies apart
is a property of a port or a device, so several placements can share one
guest, each below a root port of its own (a bus reset touches only its
own devices) with QOM ids and roles of its own. What a machine has once
is the kernel command line, the CPU model, the host bridge's properties
and whether an IOMMU translates: placements that agree on all of those
share a machine, the others get one each.
"""

from __future__ import annotations

from collections.abc import Sequence

from rig.guest.topology import Topology

# pcie.0's slots 4..31 hold the placements' root ports and RCiEPs.
SLOTS = 28


def machine_key(topo: Topology) -> tuple[object, ...]:
    """The settings a machine has once: placements with equal keys pack."""
    return (topo.iommu, topo.append, topo.cpu_model, tuple(sorted(topo.host_bridge.items())))


def slots_of(topo: Topology) -> int:
    """The pcie.0 slots a placement takes (rig.guest.topology lays them out)."""
    return {"switch": 1, "multifunction": 1, "rciep": 4,
            "rootports": 3 if topo.spare else 2}[topo.placement]


def machine_of(placements: Sequence[Topology]) -> Topology:
    """One machine holding `placements` (which share their machine_key): the
    placement itself when it is alone; else named after the first, with the
    most vCPUs and memory any of them asks for."""
    if not placements:
        raise ValueError("a machine holds at least one placement")
    first = placements[0]
    if len(placements) == 1:
        return first
    keys = {machine_key(p) for p in placements}
    if len(keys) > 1:
        raise ValueError(f"placements {', '.join(p.name for p in placements)} differ in "
                         "machine-wide settings and cannot share a machine")
    return Topology(name=f"{first.name}+{len(placements) - 1}", append=first.append,
                    cpu_model=first.cpu_model, host_bridge=dict(first.host_bridge),
                    iommu=first.iommu, vfio=first.vfio,
                    cpus=max(p.cpus for p in placements),
                    memory_mb=max(p.memory_mb for p in placements),
                    placements=tuple(placements))


def pack(placements: Sequence[Topology]) -> list[Topology]:
    """The machines that hold `placements`, in the order their first placement
    comes: placements with one machine_key share a machine as long as
    pcie.0 has slots for them, the rest open another."""
    groups: list[list[Topology]] = []
    open_group: dict[tuple[object, ...], list[Topology]] = {}
    for p in placements:
        if p.placements:
            raise ValueError(f"{p.name} is a machine already, not a placement")
        key = machine_key(p)
        group = open_group.get(key)
        if group is None or sum(map(slots_of, group)) + slots_of(p) > SLOTS:
            group = open_group[key] = []
            groups.append(group)
        group.append(p)
    return [machine_of(g) for g in groups]
