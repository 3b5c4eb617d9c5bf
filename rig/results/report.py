"""Reports of a run: the table people read, and JSON, JUnit, KTAP and Markdown for CI.

Each is made from the Run alone (rig.results.run), so a saved run renders
byte for byte as it did when it ran.
"""

from __future__ import annotations

import re
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

from rig.results.run import Outcome, Run, Status

COLUMNS = ("scenario", "set", "received", "verdict", "time")
WIDTH = 100          # the table's lines fit this many columns (a long path may not)
NAME_MAX = 32        # a longer scenario name wraps in its column
RECEIVED_MAX = 240   # a longer "received" text shows the records folded (the JSON has it)
FOOTER_MAX = 12      # lines after the scenarios' (the summary's among them), without -v
VERDICT = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.DIFFERS: "DIFFERS",
           Status.ERROR: "ERROR", Status.CRASHED: "CRASHED", Status.NOT_RUN: "NOT_RUN"}
# Characters XML 1.0 cannot hold (a console log may carry escape sequences).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _column_widths(rows: list[tuple[str, ...]], width: int) -> list[int]:
    natural = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
               for i, h in enumerate(COLUMNS)]
    natural[0] = min(natural[0], NAME_MAX)
    name, set_w, recv_w, verdict, secs = natural
    room = width - name - verdict - secs - 2 * (len(COLUMNS) - 1)
    # Share what is left between set and received: the wider gives way first.
    while set_w + recv_w > room and max(set_w, recv_w) > 12:
        if set_w >= recv_w:
            set_w -= 1
        else:
            recv_w -= 1
    return [name, set_w, recv_w, verdict, secs]


def _cell(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]


def _wrapped(text: str, first: str, rest: str, width: int) -> list[str]:
    """Each line of text wrapped to width; words are never broken (a path stays whole)."""
    out: list[str] = []
    for i, line in enumerate(text.splitlines() or [""]):
        out += textwrap.wrap(line, width, initial_indent=first if i == 0 else rest,
                             subsequent_indent=rest, break_long_words=False,
                             break_on_hyphens=False) or [(first if i == 0 else rest).rstrip()]
    return out


def _row(o: Outcome) -> tuple[str, ...]:
    secs = "-" if o.status is Status.NOT_RUN else f"{o.seconds:.2f}s"
    received = o.received or "-"
    if len(received) > RECEIVED_MAX and o.records:    # a long DMA's records, folded
        received = records_summary(o.records)
    return (o.name, o.set_text, received, VERDICT[o.status], secs)


def _fit(text: str, width: int) -> str:
    """text on one line of at most width columns, cut with "..." if longer."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:max(width - 3, 0)].rstrip() + "..."


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n}B"


def _record_key(r: dict[str, Any]) -> tuple[bool, int, int, bool, str, bool, int]:
    return (bool(r.get("th")), int(r.get("st", 0)), int(r.get("ph", 0)), bool(r.get("ext")),
            str(r.get("direction", "write")), bool(r.get("malformed")), int(r.get("length", 0)))


def records_summary(records: list[dict[str, Any]]) -> str:
    """The exporter's records, runs of equal records (hint, direction, length)
    folded: "176 x TH=1 PH=3 ST=0x1a3 ext 16 KiB" (176 records of 16 KiB
    each), "nothing" for none. The hint reads as protocol.hint_text writes it
    (the reports import no scenario code)."""
    if not records:
        return "nothing"
    parts: list[str] = []
    i = 0
    while i < len(records):
        key = _record_key(records[i])
        j = i
        while j < len(records) and _record_key(records[j]) == key:
            j += 1
        th, st, ph, ext, direction, malformed, length = key
        hint = f"TH=1 PH={ph} ST={st:#x} {'ext' if ext else '8-bit'}" if th else "no hint"
        parts.append(f"{j - i} x " * (j - i > 1) + f"{hint} {_size(length)}"
                     + " read" * (direction == "read") + " MALFORMED" * malformed)
        i = j
    return "; ".join(parts)


def _seen_line(o: Outcome, width: int) -> str:
    """What a scenario saw, in one line of width: its "received" text if it
    fits, else its records folded."""
    text = " ".join((o.received or "-").split())
    if len(text) > width and o.records:
        text = records_summary(o.records)
    return _fit(text, width)


def _brief(shown: list[Outcome], width: int) -> list[str]:
    """One line per scenario: verdict, time, name, what was seen."""
    name_w = min(max((len(o.name) for o in shown), default=0), NAME_MAX + 14)
    out = []
    for o in shown:
        secs = "-" if o.status is Status.NOT_RUN else f"{o.seconds:.2f}s"
        head = f"{VERDICT[o.status]:<7} {secs:>6}  {o.name:<{name_w}}  "
        room = max(width - len(head), 10)
        seen = (differs_text(o) if o.status is Status.DIFFERS
                else o.failures[0] if o.failures and not o.passed else _seen_line(o, room))
        out.append((head + _fit(seen, room)).rstrip())
    return out


def _case_rows(o: Outcome, width: int, full: bool) -> list[str]:
    """A kernel selftest's test cases, one line each: those that did not pass
    (every one with `full`), with the reason a skip or failure gives."""
    out = []
    for c in o.cases:
        if c.get("status") == "pass" and not full:
            continue
        why = f": {c['reason']}" if c.get("reason") else ""
        out += _wrapped(f"{c.get('status', '?'):<4} {c.get('name', '?')}{why}",
                        f"  {o.name}: ", "      ", width)
    return out


def _detail(shown: list[Outcome], width: int, full: bool = False) -> list[str]:
    """The full rows (what was set and received) of these scenarios, then each
    one's failures, test cases and stall warnings."""
    rows = [_row(o) for o in shown]
    widths = _column_widths(rows, width)

    def line(cells: tuple[str, ...]) -> list[str]:
        wrapped = [_cell(c, w) for c, w in zip(cells, widths, strict=True)]
        return ["  ".join(col[i].ljust(w) if i < len(col) else " " * w
                          for col, w in zip(wrapped, widths, strict=True)).rstrip()
                for i in range(max(len(col) for col in wrapped))]

    out = [*line(COLUMNS), "  ".join("-" * w for w in widths)]
    for r in rows:
        out += line(r)
    for o in shown:
        # what kind of check found it, where a check did (FAIL, DIFFERS)
        kinds = (o.kinds if len(o.kinds) == len(o.failures)
                 and o.status in (Status.FAIL, Status.DIFFERS) else [""] * len(o.failures))
        for f, kind in zip(o.failures, kinds, strict=True):
            out += _wrapped(f"{kind}: {f}" if kind else f, f"  {o.name}: ", "      ", width)
        out += _case_rows(o, width, full)
        if o.warnings:
            out += _wrapped(f"warning: a stall report ({len(o.warnings)} lines, in the JSON; "
                            f"the host was slow, not a verdict): {o.warnings[0].strip()}",
                            f"  {o.name}: ", "      ", width)
    return out


def summary_line(run: Run) -> str:
    """"120/125 scenarios passed (3 fail, 2 not run)", and how it was interrupted."""
    counts = [f"{run.count(s)} {s.value.lower().replace('_', ' ')}"
              for s in (Status.FAIL, Status.DIFFERS, Status.ERROR, Status.CRASHED,
                        Status.NOT_RUN)
              if run.count(s)]
    head = f"{run.count(Status.PASS)}/{len(run.outcomes)} scenarios passed"
    if counts:
        head += f" ({', '.join(counts)})"
    if run.interrupted:
        head += f"; {run.interruption}"
    return head


def _boots(run: Run, full: bool) -> str:
    def one(k: str, v: float) -> str:
        return f"{k} {v:.1f}s" + (" (restored)" if run.started.get(k) == "snapshot" else "")

    if full:
        return "boots: " + ", ".join(one(k, v) for k, v in run.boots.items())
    restored = sum(run.started.get(k) == "snapshot" for k in run.boots)
    slowest = max(run.boots, key=lambda k: run.boots[k])
    n = len(run.boots)
    return (f"boots: {n} guest{'s' * (n != 1)} ({restored} restored from snapshots), "
            f"{sum(run.boots.values()):.1f}s in all, slowest {one(slowest, run.boots[slowest])}")


def _footer(run: Run, width: int, full: bool) -> list[str]:
    """The accelerator, the boots, each topology's P2P path and what was built;
    with the summary line in at most FOOTER_MAX lines unless `full` (the paths
    beyond that are counted, not shown)."""
    accel = f"{run.accel} ({run.accel_reason})" if run.accel_reason else run.accel
    out = _wrapped(f"accel {accel}", "  ", "    ", width)
    if run.boots:
        out += _wrapped(_boots(run, full), "  ", "    ", width)
    built = [ln for name, doc in run.sources.items()
             for ln in _wrapped(f"{name}: {describe_source(doc) if full else doc_line(doc)}",
                                "  ", "      ", width)]
    paths = [f"{o.topology}: {o.path}" for o in run.outcomes if o.path]
    if full:
        return out + [ln for p in paths for ln in _wrapped(p, "  ", "    ", width)] + built
    room = FOOTER_MAX - 1 - len(out) - len(built)
    shown = paths if len(paths) <= room else paths[:max(room - 1, 0)]
    out += ["  " + _fit(re.sub(r" \([^)]*\)", "", p), width - 2) for p in shown]
    if len(shown) < len(paths):
        out.append(f"  and {len(paths) - len(shown)} more P2P path(s) (rig report -v)")
    return out + built


def doc_line(doc: dict[str, Any]) -> str:
    """What a component's build was made from, without the patches' subjects;
    a kernel that is not the reference series says so."""
    text = str(doc.get("describe") or doc.get("base") or "unknown")
    return text + ("; not the reference series (a contract-only difference is DIFFERS)"
                   if doc.get("reference") is False else "")


def table(run: Run, width: int = WIDTH, full: bool = False) -> str:
    """The report people read: one line per scenario; then, for the scenarios
    that did not pass (all of them with `full`), the whole row of what was set
    and received and every failure; the count of each status; a short footer."""
    detailed = [o for o in run.outcomes if full or not o.passed]
    out = _brief(run.outcomes, width)
    if detailed:
        out += ["", *_detail(detailed, width, full), ""]
    out.append(summary_line(run))
    return "\n".join(out + _footer(run, width, full))


def describe_source(doc: dict[str, Any]) -> str:
    """One line naming what a component's build was made from."""
    text = doc_line(doc)
    subjects = doc.get("subjects") or []
    return text + "".join(f"\n      {s}" for s in subjects)


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def differs_text(o: Outcome) -> str:
    """What a DIFFERS scenario's contract differences are: "the reference
    series gives ENODEV, this kernel success" for each."""
    pairs = Counter((c.get("reference", "?"), c.get("seen", "?")) for c in o.contract)
    return "; ".join(f"the reference series gives {ref}, this kernel {seen}"
                     + (f" ({n} checks)" if n > 1 else "")
                     for (ref, seen), n in pairs.items()) or "differs in contract"


def _first_line(texts: list[str], default: str) -> str:
    first = texts[0].splitlines()[0] if texts and texts[0].strip() else default
    return first[:200]


def to_junit(run: Run) -> str:
    fails = run.count(Status.FAIL)
    errors = run.count(Status.ERROR) + run.count(Status.CRASHED)
    skipped = run.count(Status.NOT_RUN)
    total = sum(o.seconds for o in run.outcomes)
    suites = ET.Element("testsuites", name="tphlab", tests=str(len(run.outcomes)),
                        failures=str(fails), time=f"{total:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=f"tphlab.{run.accel}",
                          tests=str(len(run.outcomes)), failures=str(fails),
                          errors=str(errors), skipped=str(skipped), time=f"{total:.3f}")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="accel", value=run.accel)
    for name, doc in run.sources.items():
        ET.SubElement(props, "property", name=f"source.{name}",
                      value=_xml(describe_source(doc)))
    ET.SubElement(props, "property", name="accel_reason", value=_xml(run.accel_reason))
    ET.SubElement(props, "property", name="exit_code", value=str(run.exit_code))
    for p in run.problems:
        ET.SubElement(props, "property", name="error", value=_xml(p.render()))
    for o in run.outcomes:
        tc = ET.SubElement(suite, "testcase", classname=f"tphlab.{o.topology}",
                           name=o.name, time=f"{o.seconds:.3f}")
        text = _xml("\n".join(o.failures))
        if o.status is Status.FAIL:
            f = ET.SubElement(tc, "failure", message=_xml(_first_line(o.failures, "failed")),
                              type="mismatch")
            f.text = text
        elif o.status is Status.DIFFERS:
            f = ET.SubElement(tc, "failure", message=_xml(differs_text(o)), type="differs")
            f.text = text
        elif o.status in (Status.ERROR, Status.CRASHED):
            e = ET.SubElement(tc, "error", message=_xml(_first_line(o.failures, o.status.value)),
                              type=o.status.value.lower())
            e.text = text
        elif o.status is Status.NOT_RUN:
            s = ET.SubElement(tc, "skipped", message=_xml(_first_line(o.failures, "not run")),
                              type="not-run")
            s.text = text
        out = ET.SubElement(tc, "system-out")
        out.text = _xml(f"set: {o.set_text}\nreceived: {o.received}\n")
    _junit_cases(suites, run)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def _junit_cases(suites: ET.Element, run: Run) -> None:
    """The kernel selftests' test cases, a testcase each, in a suite of their own."""
    rows = [(o, c) for o in run.outcomes for c in o.cases]
    if not rows:
        return
    count = Counter(c.get("status") for _, c in rows)
    suite = ET.SubElement(suites, "testsuite", name="tphlab.selftests", tests=str(len(rows)),
                          failures=str(count["fail"]), errors="0",
                          skipped=str(count["skip"]), time="0.000")
    for o, c in rows:
        tc = ET.SubElement(suite, "testcase", classname=f"tphlab.{o.topology}.{o.name}",
                           name=_xml(c.get("name", "?")), time="0.000")
        if c.get("status") == "fail":
            f = ET.SubElement(tc, "failure", message=_xml(c.get("reason", "")[:200]),
                              type="selftest")
            f.text = _xml(c.get("reason", ""))
        elif c.get("status") == "skip":
            ET.SubElement(tc, "skipped", message=_xml(c.get("reason", "")[:200]))


KTAP_DIRECTIVE = {Status.ERROR: "# ERROR the rig or the check broke",
                  Status.CRASHED: "# ERROR its guest died or hung",
                  Status.NOT_RUN: "# SKIP not run"}


def _ktap_result(i: int, o: Outcome) -> str:
    """ok / not ok, with KTAP's directive for what has no verdict (the why is in
    the diagnostic lines above it)."""
    result = "ok" if o.status in (Status.PASS, Status.NOT_RUN) else "not ok"
    directive = (f"# DIFFERS {differs_text(o)}" if o.status is Status.DIFFERS
                 else KTAP_DIRECTIVE.get(o.status))
    return f"{result} {i} {o.name}" + (f" {directive}" if directive else "")


def _ktap_subtests(o: Outcome) -> list[str]:
    """A kernel selftest's cases as KTAP subtests of its scenario."""
    if not o.cases:
        return []
    lines = ["    KTAP version 1", f"    # Subtest: {o.name}", f"    1..{len(o.cases)}"]
    for n, c in enumerate(o.cases, 1):
        status, reason = c.get("status"), " ".join(c.get("reason", "").split())
        if status == "fail" and reason:
            lines.append(f"    # {reason}")
        lines.append(f"    {'not ok' if status == 'fail' else 'ok'} {n} {c.get('name', '?')}"
                     + (f" # SKIP {reason}" if status == "skip" else ""))
    return lines


def to_ktap(run: Run) -> str:
    lines = ["KTAP version 1", f"# tphlab accel={run.accel}", f"1..{len(run.outcomes)}"]
    if run.accel_reason:
        lines.insert(2, f"# tphlab accel_reason={run.accel_reason}")
    for name, doc in run.sources.items():
        text = describe_source(doc).replace("\n", "\n# ")
        lines.insert(-1, f"# tphlab source.{name}={text}")
    for i, o in enumerate(run.outcomes, 1):
        for f in o.failures:
            lines.append(f"# {o.name}: " + f.replace("\n", "\n# "))
        lines += _ktap_subtests(o)
        lines.append(_ktap_result(i, o))
    for p in run.problems:
        lines.append("# " + p.render().replace("\n", "\n# "))
    if run.interrupted:
        lines.append(f"# tphlab {run.interruption}")
    return "\n".join(lines) + "\n"


def markdown(run: Run) -> str:
    """A run as Markdown (a CI job summary)."""
    rows = run.outcomes
    why = f" ({run.accel_reason})" if run.accel_reason else ""
    out = [f"### tphlab: {run.count(Status.PASS)}/{len(rows)} scenarios passed "
           f"(accel {run.accel}{why})",
           "",
           "| scenario | set | received | verdict |", "| --- | --- | --- | --- |"]

    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    for r in rows:
        verdict = VERDICT[r.status] if r.status in (Status.PASS, Status.NOT_RUN) \
            else f"**{VERDICT[r.status]}**"
        out.append(f"| {cell(r.name)} | {cell(r.set_text)} | {cell(r.received)} | "
                   f"{verdict} |")
    for r in rows:
        for f in r.failures:
            out.append(f"- `{r.name}`: {cell(f)}")
    for p in run.problems:
        out.append(f"- error: {cell(p.message.splitlines()[0] if p.message else '')}")
    if run.interrupted:
        out.append(f"- the run was {run.interruption}")
    for name, src in run.sources.items():
        out.append(f"- {name}: {cell(describe_source(src))}")
    return "\n".join(out)
