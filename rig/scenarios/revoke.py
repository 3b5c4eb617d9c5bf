"""Revocation and change after attach: what reviewers of the series asked about.

The exporter takes its BARs away (memory decode off, VFIO_DEVICE_RESET,
closing the VFIO device) while the importer holds a mapping. The importer's
invalidate_mappings must run, a DMA while revoked must be refused, the
exporter must answer a TPH query with ENODEV while revoked (the importer's
STATUS asks it), nothing may reach the exporter after the revoke point (the
hint log's sequence numbers show it; the log survives device reset), and
mapping again asks for the hints again and gets the value set last. A SET
after attach only takes effect at the next mapping. A revocation while the
importer runs a long DMA completes within a bound, and two attachments at
once each DMA with their own Steering Tag.

The rig reads the exporter's hint log once, after tphctl exits: the log
survives device resets, its sequence numbers show what arrived and in
which order (a DMA refused while revoked leaves no gap to fill), and each
record's reset generation shows which side of a reset it is on.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from functools import partial

from rig.guest.devices import Bench
from rig.scenarios import protocol
from rig.scenarios.findings import contract, dma, wire
from rig.scenarios.hint_cases import DEFAULT
from rig.scenarios.kit import (
    Scripted,
    Seen,
    errname,
    expect_errno,
    expect_ok,
    hint_of,
    record_direction,
)
from rig.scenarios.protocol import (
    ST,
    ST_EXT,
    Attach,
    CloseDevice,
    Decode,
    Detach,
    Dma,
    Get,
    Open,
    Read,
    Reset,
    Set,
    Status,
    hint_text,
)
from rig.scenarios.sequence import Seq
from rig.scenarios.tphctl_output import Steps

A = (0x1A1, 1)     # (extended ST, PH) set before attach
B = (0x1A2, 2)     # set while attached or revoked
PATTERNS = (0x11111111, 0x22222222, 0x33333333)


@dataclass(frozen=True)
class Tags:
    """The Steering Tag namespace a scenario sets and expects: the 16-bit one,
    or the 8-bit one (the low byte of each tag) where the importer's write
    crosses the Root Complex and the exporter withholds 16-bit tags."""

    ext: bool = True

    def of(self, tag: tuple[int, int]) -> tuple[int, int]:
        """(ST, PH) of `tag` in this namespace."""
        return tag if self.ext else (tag[0] & 0xFF, tag[1])

    def set(self, seq: Seq, tag: tuple[int, int]) -> Seq:
        st, ph = self.of(tag)
        return seq.set(ST_EXT, 0, st, ph) if self.ext else seq.set(ST, st, 0, ph)

    def text(self, tag: tuple[int, int]) -> str:
        st, ph = self.of(tag)
        return f"{'ST_EXT' if self.ext else 'ST'}={st:#x} PH={ph}"


EXT = Tags(ext=True)


def _start(tags: Tags, bench: Bench) -> Seq:
    """Open, SET A, attach and DMA once."""
    return tags.set(Seq().open(bench.exporter).get(), A).attach().dma(pattern=PATTERNS[0])


def _dma_hint(steps: Steps, nth: int, want: tuple[int, int], remapped: int,
              kind: type[Dma] | type[Read] = Dma, ext: bool = True) -> list[str]:
    bad = expect_ok(steps, kind, nth)
    d = steps.find(kind, nth)
    if bad or d is None:
        return bad
    if (bool(d.th), d.st, d.ph, d.remapped) != (True, want[0], want[1], remapped):
        sent = hint_text(bool(d.th), d.st, d.ph, bool(d.ext))
        return [wire(f"DMA #{nth + 1}: importer sent {sent}"
                     f" remapped={d.remapped}, expected {hint_text(True, *want, ext)} "
                     f"remapped={remapped}")]
    return []


def _query(steps: Steps, nth: int, want: int) -> list[str]:
    """Status nth's fresh TPH query of the exporter (get_pci_tph) returned want."""
    st = steps.find(Status, nth)
    if st is None:
        return [dma(f"status #{nth + 1} did not run")]
    if st.query_ret != want:
        return [contract(f"importer status #{nth + 1}: the exporter's TPH query returned "
                         f"{errname(-st.query_ret)}, expected {errname(-want)}",
                         errname(-want), errname(-st.query_ret))]
    return []


def _invalidated(steps: Steps, nth: int, at_least: int) -> list[str]:
    st = steps.find(Status, nth)
    if st is None:
        return [dma(f"status #{nth + 1} did not run")]
    if st.invalidations < at_least or st.mapped:
        return [dma(f"importer status #{nth + 1}: {st.invalidations} invalidation(s), "
                    f"mapped={st.mapped}; expected at least {at_least} and no mapping")]
    return []


def _log_is(seen: Seen, want: list[tuple[int, int, tuple[int, int]]],
            ext: bool = True) -> list[str]:
    """The log holds exactly these (seq, resets since the first record, (ST, PH))
    hints from the importer, extended ones unless `ext` is false."""
    recs = seen.records
    first = int(recs[0]["generation"]) if recs else 0
    got = [(int(r["seq"]), int(r["generation"]) - first, r["requester-id"], hint_of(r))
           for r in recs]
    exp = [(seq, gen, seen.rid, (True, st, ph, ext)) for seq, gen, (st, ph) in want]
    if got != exp:
        return [wire(f"the hint log holds (seq, resets since the first record, requester, hint) "
                     f"{got}, expected {exp}")]
    return []


def _first_dma_ok(tags: Tags, s: Steps) -> list[str]:
    return (expect_ok(s, Open) + expect_ok(s, Get) + expect_ok(s, Set) + expect_ok(s, Attach)
            + _dma_hint(s, 0, tags.of(A), 0, ext=tags.ext))


def decode_steps(tags: Tags, bench: Bench) -> Seq:
    seq = _start(tags, bench).decode(False).status().dma(pattern=PATTERNS[1]).status()
    return tags.set(seq, B).decode(True).dma(pattern=PATTERNS[2]).status().detach()


def decode_check(tags: Tags, seen: Seen) -> list[str]:
    s = seen.read()
    bad = _first_dma_ok(tags, s) + expect_ok(s, Decode) + _invalidated(s, 0, 1)
    bad += _query(s, 0, -errno.ENODEV)         # get_pci_tph on a revoked buffer
    bad += expect_errno(s, Dma, errno.ENODEV, 1)
    st = s.find(Status, 1)
    if st is None or st.dmas != 1:
        bad.append(dma(f"importer counted {st and st.dmas} DMAs while revoked, expected 1"))
    bad += _query(s, 1, -errno.ENODEV)
    bad += expect_ok(s, Set, 1) + expect_ok(s, Decode, 1)
    bad += _dma_hint(s, 2, tags.of(B), 1, ext=tags.ext)
    bad += _query(s, 2, 0)                     # restored: hints again
    # Nothing arrived while revoked: the DMA after decode on is the next record
    bad += _log_is(seen, [(0, 0, tags.of(A)), (1, 0, tags.of(B))], tags.ext)
    return bad


def reset_steps(tags: Tags, bench: Bench) -> Seq:
    return (tags.set(_start(tags, bench), B).reset().status()
            .dma(pattern=PATTERNS[1]).status().detach())


def reset_check(tags: Tags, seen: Seen) -> list[str]:
    s = seen.read()
    bad = _first_dma_ok(tags, s) + expect_ok(s, Set, 1) + expect_ok(s, Reset)
    bad += _invalidated(s, 0, 1)
    bad += _dma_hint(s, 1, tags.of(B), 1, ext=tags.ext)
    # A before the reset, B after it (one device reset in between), nothing else
    bad += _log_is(seen, [(0, 0, tags.of(A)), (1, 1, tags.of(B))], tags.ext)
    return bad


def close_steps(tags: Tags, bench: Bench) -> Seq:
    return (_start(tags, bench).close_device().status().dma(pattern=PATTERNS[1]).status()
            .detach().attach())


def close_check(tags: Tags, seen: Seen) -> list[str]:
    s = seen.read()
    bad = _first_dma_ok(tags, s) + expect_ok(s, CloseDevice) + _invalidated(s, 0, 1)
    bad += _query(s, 0, -errno.ENODEV) + _query(s, 1, -errno.ENODEV)
    bad += expect_errno(s, Dma, errno.ENODEV, 1)
    bad += _log_is(seen, [(0, 0, tags.of(A))], tags.ext)   # nothing after the close
    bad += expect_ok(s, Detach)
    bad += expect_errno(s, Attach, errno.ENODEV, 1)   # revoked for good
    return bad


def change_steps(tags: Tags, bench: Bench) -> Seq:
    return (tags.set(_start(tags, bench), B).dma(pattern=PATTERNS[1]).status()
            .decode(False).decode(True).dma(pattern=PATTERNS[2]).detach())


def change_check(tags: Tags, seen: Seen) -> list[str]:
    s = seen.read()
    a, b = tags.of(A), tags.of(B)
    bad = _first_dma_ok(tags, s) + expect_ok(s, Set, 1)
    bad += _dma_hint(s, 1, a, 0, ext=tags.ext)  # attached: keeps the value it was given
    st = s.find(Status, 0)
    if st is None or st.invalidations != 0:
        bad.append(contract(f"a SET invalidated the importer's mapping: {st}",
                            "no invalidation (a SET takes effect at the next mapping)",
                            f"{st.invalidations} invalidation(s)" if st else "no status"))
    bad += expect_ok(s, Decode) + expect_ok(s, Decode, 1)
    bad += (_dma_hint(s, 2, b, 1, ext=tags.ext)
            + _log_is(seen, [(0, 0, a), (1, 0, a), (2, 0, b)], tags.ext))
    return bad


# The long DMA: COUNT DMAs of CHUNK bytes in one importer ioctl, each DMA
# started under the reservation lock and run without it. It would take far
# longer than REVOKE_WITHIN_MS (each DMA polls with a sleep of 20 us or
# more); the exporter revokes the buffer LONG_AFTER_MS into it.
LONG = (0x1A3, 3)
CHUNK = 16384
COUNT = 200_000
LONG_AFTER_MS = 500
REVOKE_WITHIN_MS = 2000


def long_steps(tags: Tags, bench: Bench, read: bool = False) -> Seq:
    """With `read` the long DMA and the one after it read the buffer."""
    seq = tags.set(Seq().open(bench.exporter).get(), LONG).attach()
    seq = (seq.read_start(0, CHUNK, COUNT) if read else
           seq.dma_start(0, CHUNK, PATTERNS[0], COUNT))
    seq = seq.sleep(LONG_AFTER_MS).decode(False).dma_wait().status().decode(True).sleep(200)
    return (seq.read() if read else seq.dma(pattern=PATTERNS[1])).detach()


def _long_log(tags: Tags, seen: Seen, done: int, read: bool = False) -> list[str]:
    """The log holds the long DMA's records up to its last (the oldest may have
    been dropped), then the DMA after decode on as record `done`: nothing of
    the long DMA arrived after the revoke point, also not once decode was on."""
    recs = seen.records
    want = "read" if read else "write"
    if any(record_direction(r) != want for r in recs):
        return [wire(f"the hint log holds a record that is not a {want}: "
                     f"{next(r for r in recs if record_direction(r) != want)}")]
    seqs = [int(r["seq"]) for r in recs]
    if not seqs or seqs != list(range(seqs[0], seqs[0] + len(seqs))) or seqs[-1] != done:
        return [wire(f"the hint log holds seq {seqs[:3]}..{seqs[-3:]}, expected a run ending at "
                     f"{done} (the importer completed {done} long DMAs, then one more)")]
    bad: list[str] = []
    hint = (True, *tags.of(LONG), tags.ext)
    odd = [r for r in recs[:-1] if (r["requester-id"], hint_of(r), r["length"])
           != (seen.rid, hint, CHUNK)]
    if odd:
        bad.append(wire(f"the hint log: {len(odd)} record(s) before the last are not the long "
                        f"DMA's, e.g. {odd[0]}"))
    last = recs[-1]
    if (last["requester-id"], hint_of(last)) != (seen.rid, hint) or (
            last["length"] == CHUNK):
        bad.append(wire(f"the hint log's last record is not the DMA after decode on: {last}"))
    return bad


def long_check(tags: Tags, seen: Seen, read: bool = False) -> list[str]:
    s = seen.read()
    start = protocol.ReadStart if read else protocol.DmaStart
    bad = (expect_ok(s, Open) + expect_ok(s, Get) + expect_ok(s, Set) + expect_ok(s, Attach)
           + expect_ok(s, start) + expect_ok(s, Decode))
    off = s.find(Decode)
    if off is not None and off.ms > REVOKE_WITHIN_MS:
        bad.append(dma(f"the revocation (decode off) took {off.ms} ms while the long DMA ran, "
                       f"expected at most {REVOKE_WITHIN_MS} ms"))
    w = s.find(protocol.DmaWait)
    if w is None:
        return [*bad, dma("dma-wait did not run")]
    if w.errno != errno.ENODEV or not 0 < w.done < w.count:
        bad.append(dma(f"the long DMA ended with {errname(w.errno)} after {w.done} of {w.count} "
                       f"DMAs; expected ENODEV, stopped by the revocation after at least one"))
    long = tags.of(LONG)
    if (bool(w.th), w.st, w.ph, bool(w.ext)) != (True, *long, tags.ext):
        bad.append(wire(f"the long DMA sent {hint_text(bool(w.th), w.st, w.ph, bool(w.ext))}, "
                        f"expected {hint_text(True, *long, tags.ext)}"))
    bad += _invalidated(s, 0, 1) + _query(s, 0, -errno.ENODEV)
    st = s.find(Status, 0)
    if st is not None and st.dmas != w.done:
        bad.append(dma(f"importer counted {st.dmas} DMAs, the long DMA reported {w.done}"))
    bad += expect_ok(s, Decode, 1) + _dma_hint(s, 0, long, 1, Read if read else Dma,
                                                ext=tags.ext)
    bad += _long_log(tags, seen, w.done, read)
    return bad


def long_read_steps(tags: Tags, bench: Bench) -> Seq:
    return long_steps(tags, bench, read=True)


def long_read_check(tags: Tags, seen: Seen) -> list[str]:
    return long_check(tags, seen, read=True)


T0 = (0x2B1, 1)    # (extended ST, PH) of slot 0's dma-buf
T1 = (0x2B2, 2)    # of slot 1's, a second dma-buf of the same BAR


def two_steps(tags: Tags, bench: Bench) -> Seq:
    p = PATTERNS
    s0, s1 = Seq().slot(0), Seq().slot(1)
    return (tags.set(Seq().open(bench.exporter).get(), T0).attach()
            + s1 + tags.set(Seq().get(), T1).attach()
            + s0 + Seq().dma(pattern=p[0]) + s1 + Seq().dma(pattern=p[1])
            + s0 + Seq().dma(pattern=p[2]).decode(False).decode(True)
            + s1 + Seq().dma(pattern=p[0]) + s0 + Seq().dma(pattern=p[1])
            + s1 + Seq().detach().dma(pattern=p[2])
            + s0 + Seq().dma(pattern=p[2]).status().detach())


def two_check(tags: Tags, seen: Seen) -> list[str]:
    s = seen.read()
    t0, t1, ext = tags.of(T0), tags.of(T1), tags.ext
    bad: list[str] = []
    for kind, n in ((Open, 1), (Get, 2), (Set, 2), (Attach, 2), (Decode, 2), (Detach, 2)):
        for i in range(n):
            bad += expect_ok(s, kind, i)
    # Each attachment its own ST table entry: interleaved DMAs keep their tags
    bad += (_dma_hint(s, 0, t0, 0, ext=ext) + _dma_hint(s, 1, t1, 0, ext=ext)
            + _dma_hint(s, 2, t0, 0, ext=ext))
    # Both invalidated by the revocation, each maps again with its own hints
    bad += _dma_hint(s, 3, t1, 1, ext=ext) + _dma_hint(s, 4, t0, 1, ext=ext)
    # Slot 1 detached its own; slot 0's attachment is untouched
    bad += expect_errno(s, Dma, errno.ENOTCONN, 5) + _dma_hint(s, 6, t0, 0, ext=ext)
    st = s.find(Status)
    if st is None or (st.attached, st.mapped) != (1, 1):
        bad.append(dma(f"slot 0's attachment after slot 1 detached: {st}"))
    # Every DMA that went out, in order, with its own tag; slot 1's refused one absent
    bad += _log_is(seen, [(0, 0, t0), (1, 0, t1), (2, 0, t0), (3, 0, t1), (4, 0, t0),
                          (5, 0, t0)], ext)
    return bad


def cases(tags: Tags = EXT) -> list[Scripted]:
    """The revocation scenarios with tags of one namespace (`tags`)."""
    a, b, long = tags.text(A), tags.text(B), tags.text(LONG)

    def did(what: str) -> str:
        return f"{a}, attach, DMA; {what}"

    return [
        Scripted("revoke-decode", "memory decode off while mapped: invalidated, DMA refused, "
                 "nothing recorded; decode on: re-queried, new value on the wire",
                 did(f"decode off, DMA, SET {b}, decode on, DMA"),
                 partial(decode_steps, tags), partial(decode_check, tags), DEFAULT),
        Scripted("revoke-reset", "VFIO_DEVICE_RESET while mapped: invalidated; the next DMA "
                 "maps again and carries the value set before the reset",
                 did(f"SET {b}, reset, DMA"),
                 partial(reset_steps, tags), partial(reset_check, tags), DEFAULT),
        Scripted("revoke-close-device", "VFIO device closed while mapped: invalidated, DMA "
                 "and a new attach refused for good", did("close device, DMA, re-attach"),
                 partial(close_steps, tags), partial(close_check, tags), DEFAULT),
        Scripted("change-after-attach", "SET after attach: the importer keeps the old value "
                 "until an invalidation, then sends the new one",
                 did(f"SET {b}, DMA, invalidate, DMA"),
                 partial(change_steps, tags), partial(change_check, tags), DEFAULT),
        Scripted("revoke-during-long-dma", f"memory decode off while a long DMA runs: done "
                 f"within {REVOKE_WITHIN_MS} ms, the DMA stops with ENODEV, nothing recorded "
                 "after the revoke point, also after decode on",
                 f"{long}, attach, {COUNT} DMAs of {CHUNK}B; "
                 f"decode off after {LONG_AFTER_MS} ms, decode on, DMA",
                 partial(long_steps, tags), partial(long_check, tags), DEFAULT,
                 busy_vcpus=2),    # the DMA's thread runs while the other revokes
        Scripted("revoke-during-long-read", f"memory decode off while the importer reads "
                 f"the buffer in a long DMA: done within {REVOKE_WITHIN_MS} ms, the reads "
                 "stop with ENODEV, no read recorded after the revoke point",
                 f"{long}, attach, {COUNT} reads of {CHUNK}B; "
                 f"decode off after {LONG_AFTER_MS} ms, decode on, read",
                 partial(long_read_steps, tags), partial(long_read_check, tags), DEFAULT,
                 busy_vcpus=2),
        Scripted("two-attachments", "two dma-bufs attached by two importer files at once: "
                 "each DMA with its own ST entry, both re-queried after a revoke, one file "
                 "cannot touch the other's attachment",
                 f"dma-buf 0 {tags.text(T0)}, dma-buf 1 {tags.text(T1)}, "
                 "interleaved DMAs, revoke, file 1 detaches, file 0 DMAs",
                 partial(two_steps, tags), partial(two_check, tags), DEFAULT),
    ]
