"""The tphctl protocol: its steps against tphctl.c, the parser, the builder, the formatter."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from rig.errors import RigError
from rig.scenarios import hint_cases, hostile, matrix, protocol, tphctl_output
from rig.scenarios.kit import Seen
from rig.scenarios.protocol import ProtocolError
from rig.scenarios.sequence import Seq

DATA = Path(__file__).parent / "data"
TPHCTL_C = Path(__file__).resolve().parent.parent / "guest-image" / "tphctl.c"
RECORDED = json.loads((DATA / "run-tcg.json").read_text())

OUTPUT = """\
tphctl: a line on stderr merged in
{"step": "open", "ret": 0, "errno": 0, "error": "", "bdf": "0000:05:00.0", "device_fd": 5, \
"vfio": "iommufd"}
{"step": "set", "ret": -22, "errno": 22, "error": "Invalid argument", "flags": 3, "st": 18, \
"st_ext": 4660, "ph": 1}
{"step": "dma", "ret": 0, "errno": 0, "error": "", "offset": 0, "len": 64, "status": 0, \
"tph_ret": 0, "th": 1, "st": 4660, "ph": 1, "ext": 1, "remapped": 0}
{"step": "race-queries", "observed": [[0, 4660, 1], [-95, 0, 0]]}
"""

def _tphctl_fields() -> dict[str, dict[str, type]]:
    """Each step's fields and their types, as tphctl.c's emit() calls print them."""
    src = TPHCTL_C.read_text()
    pair = re.compile(r'\\"(\w+)\\": (\\"%s\\"|%[a-z]+|\[)')

    def fields(text: str) -> dict[str, type]:
        found = {k: (str if v.startswith("\\") else int) for k, v in pair.findall(text)}
        return {k: v for k, v in found.items() if k != "step"}

    main = src[src.index("int main("):]
    out = {}
    for chunk in re.split(r"\} else if \(", main):
        m = re.search(r'!strcmp\(s, "([\w-]+)"\)', chunk)
        if m:
            out[m.group(1)] = fields(chunk.split("} else {")[0])
    race = src[src.index("static int step_race("):src.index("#define FUZZ_POOL")]
    queries, own = race.split('printf("]}\\n");')
    out["race-queries"] = {"observed": tuple}
    out["race"] = fields(own)
    # fuzz prints its own line: seed and threads, [issued, ok] per operation
    # of names[] (in that order), then every SET that succeeded
    fuzz = src[src.index("static int step_fuzz("):src.index("static unsigned long long dma_")]
    ops = re.findall(r'"(\w+)"', fuzz[fuzz.index("names[FZ_NR]"):fuzz.index("};")])
    own_fields = {k: v for k, v in fields(fuzz).items() if k in ("seed", "threads")}
    out["fuzz"] = {**own_fields, **dict.fromkeys(ops, tuple), "sets": tuple}
    cpu_st = src[src.index("static int cpu_st_step("):]
    out["cpu-st"] = out["cpu-st-use"] = fields(cpu_st[:cpu_st.index("\n}\n")])
    assert "observed" in queries
    return out


def test_the_steps_are_the_ones_tphctl_knows() -> None:
    tphctl = _tphctl_fields()
    assert set(protocol.STEP_NAMES) == set(tphctl) - {"race-queries"}
    header = TPHCTL_C.read_text().split("*/")[0]
    assert all(re.search(rf"^ \*   {re.escape(n)}\b", header, re.M) for n in protocol.STEP_NAMES)


def test_each_record_has_the_fields_tphctl_prints() -> None:
    for name, fields in _tphctl_fields().items():
        kind = protocol.KINDS[name]
        mine = dict(protocol.FIELDS[kind])
        base = {"ret": int, "errno": int, "error": str} if name != "race-queries" else {}
        want = {**base, **fields}
        assert list(mine) == list(want), name
        assert all(mine[k] is want[k] for k in want if want[k] is not tuple), name


def test_good_lines_parse_into_typed_records() -> None:
    steps, garbled = tphctl_output.parse(OUTPUT)
    assert garbled == []
    op, st, dma, race = steps
    assert op == protocol.Open(bdf="0000:05:00.0", device_fd=5, vfio="iommufd")
    assert isinstance(st, protocol.Set) and (st.errno, st.st_ext, st.error) == (
        22, 0x1234, "Invalid argument")
    assert isinstance(dma, protocol.Dma) and (dma.th, dma.len, dma.remapped) == (1, 64, 0)
    assert race == protocol.RaceQueries(observed=((0, 0x1234, 1), (-95, 0, 0)))
    # The record prints as the line it was read from.
    assert [s.line() for s in steps] == tphctl_output.split(OUTPUT)[0]


def test_a_missing_field_is_a_protocol_error_naming_step_and_field() -> None:
    lines, _ = tphctl_output.split(OUTPUT)
    del lines[2]["th"]
    with pytest.raises(ProtocolError, match=r'step "dma" \(line 3\): field "th" is missing'):
        tphctl_output.Steps(lines)
    assert issubclass(ProtocolError, RigError)


@pytest.mark.parametrize("field,value,wanted", [
    ("th", "1", "an integer"), ("ph", None, "an integer"), ("st", True, "an integer"),
    ("error", 0, "a string")])
def test_a_malformed_field_is_a_protocol_error(field: str, value: object, wanted: str) -> None:
    lines, _ = tphctl_output.split(OUTPUT)
    lines[2][field] = value
    with pytest.raises(ProtocolError, match=f'step "dma".*field "{field}" is .*, not {wanted}'):
        tphctl_output.Steps(lines)


def test_malformed_answers_and_unknown_steps_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match=r'"race-queries".*field "observed"'):
        tphctl_output.record({"step": "race-queries", "observed": [[0, 1]]})
    with pytest.raises(ProtocolError, match='field "step" is "frobnicate", no step tphctl has'):
        tphctl_output.record({"step": "frobnicate", "ret": 0, "errno": 0})
    with pytest.raises(ProtocolError, match='field "step" is null'):
        tphctl_output.record({"ret": 0})


def test_a_garbled_line_is_set_apart() -> None:
    cut = '{"step": "race-queries", "observed": [[0, 1'
    steps, garbled = tphctl_output.parse(OUTPUT + cut)
    assert len(steps) == 4 and garbled == [cut]
    assert tphctl_output.split(OUTPUT + cut) == (tphctl_output.split(OUTPUT)[0], [cut])


@pytest.mark.parametrize("name", [s["name"] for s in RECORDED["scenarios"]])
def test_a_recorded_run_parses(name: str) -> None:
    doc = next(s for s in RECORDED["scenarios"] if s["name"] == name)
    steps = tphctl_output.Steps(doc["steps"])
    assert [s.line() for s in steps.lines] == doc["steps"]
    # and from tphctl's output, as the runner reads it
    out = "\n".join(json.dumps(s) for s in doc["steps"])
    assert tphctl_output.parse(out)[0] == steps.lines


@pytest.mark.parametrize("name", [c.name for c in matrix.full()])
def test_every_scenario_reports_what_the_recorded_run_reported(name: str) -> None:
    doc = next(s for s in RECORDED["scenarios"] if s["name"] == name)
    case = next(c for c in matrix.full() if c.name == name)
    seen = Seen(copy.deepcopy(doc["steps"]), copy.deepcopy(doc["records"]), 0,
                doc.get("ktap", ""), doc.get("dma_errors", {}))
    assert (case.summary, case.describe_set(), case.received(seen)) == (
        doc["summary"], doc["set"], doc["received"])


def _without(doc_name: str, step: str, field: str) -> Seen:
    doc = next(s for s in RECORDED["scenarios"] if s["name"] == doc_name)
    seen = Seen(copy.deepcopy(doc["steps"]), copy.deepcopy(doc["records"]), 0)
    del next(s for s in seen.steps if s["step"] == step)[field]
    return seen


@pytest.mark.parametrize("name,step,field", [
    ("ext-st", "attach", "tph_ret"), ("revoke-decode", "status", "invalidations"),
    ("change-after-attach", "dma", "remapped"), ("hostile-attach-twice", "set", "errno"),
    ("race-set-vs-query-ext", "race", "set_errno"), ("importer-module-reload", "rmmod", "ret")])
def test_a_check_reading_a_line_without_a_field_raises_protocol_error(name: str, step: str,
                                                                      field: str) -> None:
    case = next(c for c in matrix.full() if c.name == name)
    with pytest.raises(ProtocolError, match=f'step "{step}".*field "{field}" is missing'):
        case.check(_without(name, step, field))


def test_received_says_why_it_cannot_read_the_steps() -> None:
    h = next(c for c in hostile.cases() if c.name == "hostile-attach-twice")
    got = h.received(_without(h.name, "attach", "errno"))
    assert got.startswith('unreadable: tphctl step "attach"') and 'field "errno"' in got


def test_the_builder_makes_the_lines_tphctl_reads() -> None:
    seq = (Seq().open("0000:05:00.0").probe().get().other("0000:07:00.0")
           .set(protocol.ST | protocol.ST_EXT, 0x12, 0x3456, 2)
           .set_raw("closed", protocol.ST, 0x11, 0x1111, 0, -1).tph_get().attach()
           .attach("eventfd").dma().dma("end-32", 64, 0x1).status().decode(False).decode(True)
           .reset().close_device().race(4, 4000).detach())
    assert seq.args == (
        "open", "0000:05:00.0", "probe", "get", "other", "0000:07:00.0",
        "set", "3", "0x12", "0x3456", "2", "set-raw", "closed", "1", "0x11", "0x1111", "0", "-1",
        "tph-get", "attach", "attach", "eventfd", "dma", "0", "64", "0xa5a5a5a5",
        "dma", "end-32", "64", "0x1", "status", "decode", "off", "decode", "on", "reset",
        "close-device", "race", "4", "4000", "detach")
    assert (Seq().open("a b") + Seq().get()).command() == "tphctl -k open 'a b' get"


@pytest.mark.parametrize("th,st,ph,ext,length,text", [
    (True, 0x42, 2, False, 64, "TH=1 PH=2 ST=0x42 8-bit x64B"),
    (True, 0xBEEF, 1, True, None, "TH=1 PH=1 ST=0xbeef ext"),
    (False, 0x42, 2, True, 64, "no hint x64B")])
def test_hint_text(th: bool, st: int, ph: int, ext: bool, length: int | None, text: str) -> None:
    assert protocol.hint_text(th, st, ph, ext, length) == text
    if th and length is None:
        assert hint_cases.Hint(st, ph, ext).describe() == text


def test_every_bad_set_is_a_hostile_row_and_back() -> None:
    rows = {h.name: h for h in hostile.cases()}
    for b in hint_cases.BAD_SETS:
        h = rows[f"hostile-{b.name}"]
        assert (h.label, h.errno, h.probe, h.setup, h.other) == (
            b.label, b.errno, b.seq(), Seq(), b.fd == "other")
    bad_steps = {protocol.SetRaw.NAME, protocol.TphGet.NAME}
    fed_badly = [h for h in rows.values() if h.step_name in bad_steps]
    assert [h.name for h in fed_badly] == [f"hostile-{b.name}" for b in hint_cases.BAD_SETS]
    # The SETs a completer refuses are the matrix's own.
    for s in (hint_cases.SET_NO_COMPLETER, hint_cases.SET_EXT_8BIT_COMPLETER):
        assert any(h.probe == s.seq() and h.errno == s.errno for h in rows.values())
        assert any(s in c.sets for c in hint_cases.matrix())


def test_a_saved_line_of_an_older_tphctl_reads_its_added_fields_as_defaults() -> None:
    old = {"step": "open", "ret": 0, "errno": 0, "error": "", "bdf": "0000:05:00.0",
           "device_fd": 5}
    assert tphctl_output.record(old) == protocol.Open(bdf="0000:05:00.0", device_fd=5, vfio="")
    # Only the added fields may be missing
    del old["device_fd"]
    with pytest.raises(protocol.ProtocolError, match='field "device_fd" is missing'):
        tphctl_output.record(old)
