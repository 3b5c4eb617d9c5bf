"""Two saved runs side by side: what each scenario did differently.

`git range-diff` for behaviour: run the matrix on version N of a series
and on N+1 (or on a tree before and after an edit), then compare the two
run reports. Per scenario it compares the verdict, the errno of every
step, the outcome of every importer DMA and the exporter's hint records.

Ignored, because they differ between equal runs: times, the records'
sequence numbers and reset generations, paths (logs, output
directories), file descriptors, PCI addresses and DMA addresses. Records
are compared by requester role, not by requester ID: the requesters of a
scenario are numbered in the order they first appear in its log (the
importer is the first), so a topology whose bus numbers moved still
compares equal.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from rig.results.run import Outcome, Run

IGNORED = ("times", "record seq and generation", "logs and output paths", "fds",
           "PCI and DMA addresses", "requester IDs (compared by role)")
# What a step's outcome is, for the importer DMA steps beyond their errno
_TRANSFERS = ("dma", "read", "dma-wait")
_TRANSFER_FIELDS = ("status", "tph_ret", "th", "st", "ph", "ext")
_RECORD_FIELDS = ("direction", "offset", "length", "th", "ph", "st", "ext", "malformed")


def _field(key: str, value: Any) -> str:
    """"st=0x1a1" for a Steering Tag, "key=value" for the rest."""
    return f"{key}={value:#x}" if key == "st" and isinstance(value, int) else f"{key}={value}"


def _errnos(o: Outcome) -> list[str]:
    """Each step as "name errno", in order."""
    return [f"{s.get('step', '?')} {s.get('errno', 0)}" for s in o.steps]


def _transfers(o: Outcome) -> list[str]:
    """The outcome of each importer DMA step."""
    return [f"{s['step']} " + " ".join(_field(k, s.get(k)) for k in _TRANSFER_FIELDS)
            for s in o.steps if s.get("step") in _TRANSFERS]


def _records(o: Outcome) -> list[str]:
    """Each hint record with its requester's role instead of its ID."""
    roles: dict[Any, int] = {}
    out = []
    for r in o.records:
        role = roles.setdefault(r.get("requester-id"), len(roles) + 1)
        fields = {k: r.get(k) for k in _RECORD_FIELDS}
        fields["direction"] = fields["direction"] or "write"   # older reports: writes
        fields["malformed"] = bool(fields["malformed"])
        out.append(f"requester#{role} " + " ".join(_field(k, v) for k, v in fields.items()))
    return out


@dataclass(frozen=True)
class Change:
    """One field of one scenario that differs: its values in A and in B."""

    what: str
    a: str
    b: str


def _list_change(what: str, a: list[str], b: list[str]) -> list[Change]:
    if a == b:
        return []
    # The first entry that differs, and how many do
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
             min(len(a), len(b)))
    differing = sum(x != y for x, y in zip(a, b, strict=False)) + abs(len(a) - len(b))
    return [Change(f"{what} #{n + 1} ({differing} of {max(len(a), len(b))} differ)",
                   a[n] if n < len(a) else "(none)", b[n] if n < len(b) else "(none)")]


def changes(a: Outcome, b: Outcome) -> list[Change]:
    """What differs between two outcomes of one scenario, ignoring IGNORED."""
    out = []
    if a.status != b.status:
        out.append(Change("status", a.status.value, b.status.value))
    out += _list_change("errno of step", _errnos(a), _errnos(b))
    out += _list_change("DMA", _transfers(a), _transfers(b))
    out += _list_change("record", _records(a), _records(b))
    return out


@dataclass(frozen=True)
class Comparison:
    changed: dict[str, list[Change]]
    added: list[Outcome]        # only in B
    removed: list[Outcome]      # only in A
    same: int

    @property
    def equal(self) -> bool:
        return not (self.changed or self.added or self.removed)


def compare(a: Run, b: Run) -> Comparison:
    in_a = {o.name: o for o in a.outcomes}
    in_b = {o.name: o for o in b.outcomes}
    changed = {name: c for name, o in in_a.items() if name in in_b
               and (c := changes(o, in_b[name]))}
    return Comparison(changed, [o for n, o in in_b.items() if n not in in_a],
                      [o for n, o in in_a.items() if n not in in_b],
                      sum(1 for n in in_a if n in in_b and n not in changed))


def render(c: Comparison, a_name: str = "A", b_name: str = "B") -> str:
    lines = []
    for name, ch in c.changed.items():
        lines.append(f"! {name}")
        for x in ch:
            lines += [f"    {x.what}:", f"      {a_name}: {x.a}", f"      {b_name}: {x.b}"]
    lines += [f"+ {o.name} (only in {b_name}) {o.status.value}" for o in c.added]
    lines += [f"- {o.name} (only in {a_name}) {o.status.value}" for o in c.removed]
    lines.append(f"{c.same} same, {len(c.changed)} changed, {len(c.added)} added, "
                 f"{len(c.removed)} removed")
    lines.append(textwrap.fill(f"ignored: {', '.join(IGNORED)}", 100,
                               subsequent_indent="  "))
    return "\n".join(lines)


__all__ = ["IGNORED", "Change", "Comparison", "changes", "compare", "render"]
