"""Revocation and change after attach: what reviewers of the series asked about.

The exporter takes its BARs away (memory decode off, VFIO_DEVICE_RESET,
closing the VFIO device) while the importer holds a mapping. The importer's
invalidate_mappings must run, a DMA while revoked must be refused, nothing
may reach the exporter after the revoke point, and mapping again asks for
the hints again and gets the value set last. A SET after attach only takes
effect at the next mapping.

The rig reads the exporter's hint log once, after tphctl exits: the log
survives device resets, its sequence numbers show what arrived and in
which order (a DMA refused while revoked leaves no gap to fill), and each
record's reset generation shows which side of a reset it is on.
"""

from __future__ import annotations

import errno

from rig.scenarios.hint_cases import DEFAULT
from rig.scenarios.kit import Bench, Scripted, Seen, expect_errno, expect_ok, hint_of
from rig.scenarios.protocol import (
    ST_EXT,
    Attach,
    CloseDevice,
    Decode,
    Detach,
    Dma,
    Get,
    Open,
    Reset,
    Seq,
    Set,
    Status,
    Steps,
    hint_text,
)

A = (0x1A1, 1)     # (extended ST, PH) set before attach
B = (0x1A2, 2)     # set while attached or revoked
PATTERNS = (0x11111111, 0x22222222, 0x33333333)


def _start(bench: Bench) -> Seq:
    """Open, SET A, attach and DMA once."""
    return (Seq().open(bench.exporter).get().set(ST_EXT, 0, *A).attach()
            .dma(pattern=PATTERNS[0]))


def _dma_hint(steps: Steps, nth: int, want: tuple[int, int], remapped: int) -> list[str]:
    bad = expect_ok(steps, Dma, nth)
    d = steps.find(Dma, nth)
    if bad or d is None:
        return bad
    if (bool(d.th), d.st, d.ph, d.remapped) != (True, want[0], want[1], remapped):
        return [f"DMA #{nth + 1}: importer sent {hint_text(bool(d.th), d.st, d.ph, bool(d.ext))}"
                f" remapped={d.remapped}, expected {hint_text(True, *want, True)} "
                f"remapped={remapped}"]
    return []


def _invalidated(steps: Steps, nth: int, at_least: int) -> list[str]:
    st = steps.find(Status, nth)
    if st is None:
        return [f"status #{nth + 1} did not run"]
    if st.invalidations < at_least or st.mapped:
        return [f"importer status #{nth + 1}: {st.invalidations} invalidation(s), "
                f"mapped={st.mapped}; expected at least {at_least} and no mapping"]
    return []


def _log_is(seen: Seen, want: list[tuple[int, int, tuple[int, int]]]) -> list[str]:
    """The log holds exactly these (seq, resets since the first record, (ST, PH))
    extended hints from the importer."""
    recs = seen.records
    first = int(recs[0]["generation"]) if recs else 0
    got = [(int(r["seq"]), int(r["generation"]) - first, r["requester-id"], hint_of(r))
           for r in recs]
    exp = [(seq, gen, seen.rid, (True, st, ph, True)) for seq, gen, (st, ph) in want]
    if got != exp:
        return [f"the hint log holds (seq, resets since the first record, requester, hint) "
                f"{got}, expected {exp}"]
    return []


def _first_dma_ok(seen: Seen, s: Steps) -> list[str]:
    return (expect_ok(s, Open) + expect_ok(s, Get) + expect_ok(s, Set) + expect_ok(s, Attach)
            + _dma_hint(s, 0, A, 0))


def decode_steps(bench: Bench) -> Seq:
    return (_start(bench).decode(False).status().dma(pattern=PATTERNS[1]).status()
            .set(ST_EXT, 0, *B).decode(True).dma(pattern=PATTERNS[2]).status()
            .detach())


def decode_check(seen: Seen) -> list[str]:
    s = seen.read()
    bad = _first_dma_ok(seen, s) + expect_ok(s, Decode) + _invalidated(s, 0, 1)
    bad += expect_errno(s, Dma, errno.ENODEV, 1)
    st = s.find(Status, 1)
    if st is None or st.dmas != 1:
        bad.append(f"importer counted {st and st.dmas} DMAs while revoked, expected 1")
    bad += expect_ok(s, Set, 1) + expect_ok(s, Decode, 1)
    bad += _dma_hint(s, 2, B, 1)
    # Nothing arrived while revoked: the DMA after decode on is the next record
    bad += _log_is(seen, [(0, 0, A), (1, 0, B)])
    return bad


def reset_steps(bench: Bench) -> Seq:
    return (_start(bench).set(ST_EXT, 0, *B).reset().status()
            .dma(pattern=PATTERNS[1]).status().detach())


def reset_check(seen: Seen) -> list[str]:
    s = seen.read()
    bad = _first_dma_ok(seen, s) + expect_ok(s, Set, 1) + expect_ok(s, Reset)
    bad += _invalidated(s, 0, 1)
    bad += _dma_hint(s, 1, B, 1)
    # A before the reset, B after it (one device reset in between), nothing else
    bad += _log_is(seen, [(0, 0, A), (1, 1, B)])
    return bad


def close_steps(bench: Bench) -> Seq:
    return (_start(bench).close_device().status().dma(pattern=PATTERNS[1]).status()
            .detach().attach())


def close_check(seen: Seen) -> list[str]:
    s = seen.read()
    bad = _first_dma_ok(seen, s) + expect_ok(s, CloseDevice) + _invalidated(s, 0, 1)
    bad += expect_errno(s, Dma, errno.ENODEV, 1)
    bad += _log_is(seen, [(0, 0, A)])          # nothing after the device was closed
    bad += expect_ok(s, Detach)
    bad += expect_errno(s, Attach, errno.ENODEV, 1)   # revoked for good
    return bad


def change_steps(bench: Bench) -> Seq:
    return (_start(bench).set(ST_EXT, 0, *B).dma(pattern=PATTERNS[1]).status()
            .decode(False).decode(True).dma(pattern=PATTERNS[2]).detach())


def change_check(seen: Seen) -> list[str]:
    s = seen.read()
    bad = _first_dma_ok(seen, s) + expect_ok(s, Set, 1)
    bad += _dma_hint(s, 1, A, 0)               # attached: keeps the value it was given
    st = s.find(Status, 0)
    if st is None or st.invalidations != 0:
        bad.append(f"a SET invalidated the importer's mapping: {st}")
    bad += expect_ok(s, Decode) + expect_ok(s, Decode, 1)
    bad += _dma_hint(s, 2, B, 1) + _log_is(seen, [(0, 0, A), (1, 0, A), (2, 0, B)])
    return bad


def _did(what: str) -> str:
    return f"ST_EXT={A[0]:#x} PH={A[1]}, attach, DMA; {what}"


def cases() -> list[Scripted]:
    return [
        Scripted("revoke-decode", "memory decode off while mapped: invalidated, DMA refused, "
                 "nothing recorded; decode on: re-queried, new value on the wire",
                 _did(f"decode off, DMA, SET ST_EXT={B[0]:#x} PH={B[1]}, decode on, DMA"),
                 decode_steps, decode_check, DEFAULT),
        Scripted("revoke-reset", "VFIO_DEVICE_RESET while mapped: invalidated; the next DMA "
                 "maps again and carries the value set before the reset",
                 _did(f"SET ST_EXT={B[0]:#x} PH={B[1]}, reset, DMA"),
                 reset_steps, reset_check, DEFAULT),
        Scripted("revoke-close-device", "VFIO device closed while mapped: invalidated, DMA "
                 "and a new attach refused for good", _did("close device, DMA, re-attach"),
                 close_steps, close_check, DEFAULT),
        Scripted("change-after-attach", "SET after attach: the importer keeps the old value "
                 "until an invalidation, then sends the new one",
                 _did(f"SET ST_EXT={B[0]:#x} PH={B[1]}, DMA, invalidate, DMA"),
                 change_steps, change_check, DEFAULT),
    ]
