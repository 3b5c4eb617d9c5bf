"""rig fuzz uapi: tphctl's fuzz step read back, and what fails the fuzz: a
stray record, an invented hint, a new taint, a blind run; then a bounded
run on the debug kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rig.guest.devices import Bench
from rig.scenarios import matrix, protocol, tphctl_output
from rig.scenarios.findings import Kind, kind_of
from rig.scenarios.kit import Seen
from rig.scenarios.protocol import ST, ST_EXT, Fuzz
from rig.scenarios.uapi_fuzz import UapiFuzz, allowed_hints, stray_records

REPO = Path(__file__).resolve().parent.parent
RID = 0x0200


def _fuzz_line(**over: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"step": "fuzz", "ret": 0, "errno": 0, "error": "", "seed": 7,
                            "threads": 4}
    for op in Fuzz.OPERATIONS:
        line[op] = [10, 5]
    line["sets"] = [[ST, 0xA3, 0x1A3, 1], [ST_EXT, 0x42, 0x8000, 2]]
    return {**line, **over}


def _record(st: int, ph: int, ext: bool, rid: int = RID, th: bool = True) -> dict[str, Any]:
    return {"requester-id": rid, "th": th, "st": st, "ph": ph, "ext": ext, "offset": 0x40}


def _taint(mask: int) -> dict[str, Any]:
    return {"step": "tainted", "ret": 0, "errno": 0, "mask": mask}


def _seen(records: list[dict[str, Any]], total: int | None = None, before: int = 1 << 12,
          after: int = 1 << 12, **over: Any) -> Seen:
    steps = [_taint(before), _fuzz_line(**over), _taint(after)]
    return Seen(steps, records, RID, "", {}, len(records) if total is None else total)


CASE = UapiFuzz("fuzz-uapi-seed7", matrix.topology("iommu-rootports"), 7, 140)


def _fuzz() -> Fuzz:
    f = tphctl_output.record(_fuzz_line())
    assert isinstance(f, Fuzz)
    return f


def test_the_fuzz_line_parses_into_its_counts_and_sets() -> None:
    steps, garbled = tphctl_output.parse(json.dumps(_fuzz_line()))
    assert garbled == [] and isinstance(steps[0], Fuzz)
    f = steps[0]
    assert (f.issued("dma"), f.succeeded("dma"), f.seed) == (10, 5, 7)
    assert f.sets == ((ST, 0xA3, 0x1A3, 1), (ST_EXT, 0x42, 0x8000, 2))
    assert json.loads(str(f))["sets"] == [[ST, 0xA3, 0x1A3, 1], [ST_EXT, 0x42, 0x8000, 2]]
    with pytest.raises(protocol.ProtocolError, match="not a list of integers"):
        tphctl_output.parse(json.dumps(_fuzz_line(dma=["x"])))


def test_hints_a_record_may_carry_come_from_successful_sets() -> None:
    f = _fuzz()
    ext, short = allowed_hints(f)
    assert ext == {(0x8000, 2)}
    # 8-bit: the 8-bit tag of a SET with ST, or the low byte of a 16-bit one
    assert short == {(0xA3, 1), (0x00, 2)}


def test_a_clean_run_passes() -> None:
    records = [_record(0xA3, 1, False), _record(0x8000, 2, True), _record(0, 0, False, th=False),
               _record(0x1234, 0, False, rid=0, th=False)]
    assert CASE.check(_seen(records)) == []


def test_records_no_dma_asked_for_fail_the_fuzz() -> None:
    f = _fuzz()
    # 10 DMAs and 10 copies (two requests each): at most 30 requests
    assert stray_records(f, [], RID, 30) == []
    over = stray_records(f, [], RID, 31)
    assert len(over) == 1 and "recorded 31 requests" in over[0]
    assert kind_of(over[0]) is Kind.WIRE
    other = stray_records(f, [_record(0xA3, 1, False, rid=0x0300)], RID, 1)
    assert any("0x0300" in b for b in other)
    invented = stray_records(f, [_record(0x1A3, 1, True)], RID, 1)
    assert any("hint no SET gave" in b and "ST 0x1a3" in b for b in invented)


def test_a_new_taint_and_a_blind_run_fail_the_fuzz() -> None:
    tainted = CASE.check(_seen([], before=1 << 12, after=(1 << 12) | (1 << 9)))
    assert any("tainted the kernel: W (bit 9)" in b for b in tainted)
    blind = CASE.check(_seen([], dma=[35, 0], attach=[0, 0]))
    assert any("no attach, dma succeeded" in b for b in blind)
    short = CASE.check(_seen([], get=[9, 5]))
    assert any("139 operations ran, expected 140" in b for b in short)
    missing = CASE.check(Seen([_taint(0)], [], RID))
    assert missing == ["the fuzz step printed no result (see its output)"]
    assert kind_of(missing[0]) is Kind.DMA
    assert kind_of(tainted[0]) is Kind.HEALTH


def test_the_command_reads_the_taint_around_the_fuzz() -> None:
    cmd = CASE.command(Bench("0000:01:00.0", "0000:02:00.0", "0000:03:00.0"))
    first, taint, fuzz, taint2 = cmd.split("; ", 3)
    assert first == "tphctl -k open 0000:01:00.0" and taint == taint2
    assert fuzz == "tphctl -k open 0000:01:00.0 other 0000:03:00.0 fuzz 7 140 4"
    alone = CASE.command(Bench("0000:01:00.0", "0000:02:00.0"))
    assert "other" not in alone


@pytest.mark.integration
def test_a_bounded_fuzz_on_the_debug_kernel_passes(tmp_path: Path) -> None:
    """3000 operations in 4 threads on the debug kernel (KASAN, lockdep) and the
    IOMMU topology: no splat, leak, taint or stray record, and every kind of
    operation ran."""
    out = tmp_path / "fuzz.json"
    res = subprocess.run([sys.executable, "-m", "rig", "fuzz", "uapi", "--ops", "3000",
                          "--seed", "20261206", "--json", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=3600, check=False,
                         env=dict(os.environ))
    print(res.stdout)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-3000:]
    s = json.loads(out.read_text())["scenarios"][0]
    assert s["status"] == "PASS" and s["name"] == "fuzz-uapi-seed20261206"
    f = next(st for st in s["steps"] if st["step"] == "fuzz")
    assert all(f[op][0] > 0 for op in Fuzz.OPERATIONS), f
    assert f["dma"][1] > 0 and f["attach"][1] > 0
    assert any(r["th"] for r in s["records"]), "no hinted DMA reached the exporter"
