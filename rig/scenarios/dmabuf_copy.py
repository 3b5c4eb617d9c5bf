"""A copy between two dma-bufs: the importer's device reads one and writes the
other in one command (TPH_IMPORTER_COPY, tph-testdev's COPY), every request
carrying one hint.

Two dma-bufs of the exporter's BAR2, each attached by an importer file of its
own and each with its own TPH values. The importer takes both reservation
locks together (a ww_acquire_ctx) to map, query and start the copy. The
device sends one hint on every request of a copy, and a Steering Tag means
something only to the completer that handed it out, so the importer copies
only between mappings that carry the same hint: with different ones it
refuses (EXDEV) and nothing reaches the exporter. A revocation invalidates
both mappings; the next copy maps both again and asks both for their hints.
"""

from __future__ import annotations

import errno
from functools import partial

from rig.guest.devices import Bench
from rig.scenarios.findings import dma, wire
from rig.scenarios.hint_cases import DEFAULT
from rig.scenarios.kit import Scripted, Seen, expect_errno, expect_ok, hint_of, record_direction
from rig.scenarios.protocol import DMA_LEN, Attach, Copy, Decode, Get, Open, Set, hint_text
from rig.scenarios.revoke import EXT, Tags
from rig.scenarios.sequence import Seq
from rig.scenarios.tphctl_output import Steps

T = (0x3C3, 2)       # (extended ST, PH) of both dma-bufs for the first copy
U = (0x3D4, 3)       # set on the destination, then on the source too
SRC_OFFSET = 0x0     # in the source dma-buf (slot 0) ...
DST_OFFSET = 0x8000  # ... and in the destination (slot 1): both of the same BAR2
BOTH_REMAPPED = 3    # Copy.remapped: the destination's (bit 0) and the source's (bit 1)


def _revoke() -> Seq:
    """Memory decode off and on: every mapping of the exporter is invalidated."""
    return Seq().decode(False).decode(True)


def steps(tags: Tags, bench: Bench) -> Seq:
    """Slot 0 the source, slot 1 the destination: copy with one hint on both;
    the destination's changed and both revoked: refused; the source's changed
    too and both revoked: copied with the new hint."""
    s0, s1 = Seq().slot(0), Seq().slot(1)
    copy = Seq().copy(0, SRC_OFFSET, DST_OFFSET)
    return (tags.set(Seq().open(bench.exporter).get(), T).attach()
            + s1 + tags.set(Seq().get(), T).attach() + copy
            + tags.set(Seq(), U) + _revoke() + copy
            + s0 + tags.set(Seq(), U) + _revoke() + s1 + copy)


def _copied(s: Steps, nth: int, want: tuple[int, int], remapped: int, ext: bool) -> list[str]:
    bad = expect_ok(s, Copy, nth)
    c = s.find(Copy, nth)
    if bad or c is None:
        return bad
    got = (bool(c.th), c.st, c.ph, bool(c.ext), c.remapped)
    if got != (True, *want, ext, remapped):
        return [wire(f"copy #{nth + 1}: importer sent "
                     f"{hint_text(bool(c.th), c.st, c.ph, bool(c.ext))} remapped={c.remapped}, "
                     f"expected {hint_text(True, *want, ext)} remapped={remapped}")]
    return []


def _log(tags: Tags, seen: Seen) -> list[str]:
    """Exactly two copies reached the exporter, each a read of the source then
    a write of the destination, from the importer, with the copy's hint."""
    got = [(record_direction(r), int(r["offset"]), int(r["length"]), r["requester-id"],
            hint_of(r), bool(r.get("malformed", False))) for r in seen.records]
    want = [(direction, offset, DMA_LEN, seen.rid, (True, *tags.of(tag), tags.ext), False)
            for tag in (T, U)
            for direction, offset in (("read", SRC_OFFSET), ("write", DST_OFFSET))]
    if got != want:
        return [wire(f"the hint log holds (direction, offset, length, requester, hint, "
                     f"malformed) {got}, expected {want}")]
    return []


def check(tags: Tags, seen: Seen) -> list[str]:
    s = seen.read()
    bad: list[str] = []
    for kind, n in ((Open, 1), (Get, 2), (Set, 4), (Attach, 2), (Decode, 4)):
        for i in range(n):
            bad += expect_ok(s, kind, i)
    bad += _copied(s, 0, tags.of(T), 0, tags.ext)
    # Both invalidated and mapped again; the destination's new hint is not the source's
    bad += expect_errno(s, Copy, errno.EXDEV, 1)
    refused = s.find(Copy, 1)
    if refused is not None and refused.remapped != BOTH_REMAPPED:
        bad.append(dma(f"copy #2 remapped={refused.remapped}, expected {BOTH_REMAPPED}: both "
                       "mappings made again after the revocation"))
    bad += _copied(s, 2, tags.of(U), BOTH_REMAPPED, tags.ext)
    return bad + _log(tags, seen)


def cases(tags: Tags = EXT) -> list[Scripted]:
    """The copy scenario with tags of one namespace (`tags`)."""
    return [Scripted(
        "copy-two-dmabufs", "the importer copies between two dma-bufs, both reservation "
        "locks held: one hint on every read and write; different hints refused (EXDEV), "
        "nothing sent; both re-queried after a revoke",
        f"dma-bufs 0 and 1 {tags.text(T)}, copy 0 -> 1; dma-buf 1 {tags.text(U)}, revoke, "
        f"copy; dma-buf 0 {tags.text(U)}, revoke, copy",
        partial(steps, tags), partial(check, tags), DEFAULT)]
