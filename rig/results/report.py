"""Reports of a run: the table people read, and JSON, JUnit and KTAP for CI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from rig.results.runner import Outcome, Run

COLUMNS = ("scenario", "set", "received", "verdict", "time")


def table(run: Run) -> str:
    rows = [(o.case.name, o.case.describe_set(), o.received, "PASS" if o.passed else "FAIL",
             f"{o.seconds:.2f}s") for o in run.outcomes]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(COLUMNS)]
    line = "  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for o in run.outcomes:
        for f in o.failures:
            out.append(f"  {o.case.name}: {f}")
    npass = sum(o.passed for o in run.outcomes)
    accel = f"{run.accel} ({run.accel_reason})" if run.accel_reason else run.accel
    out.append(f"{npass}/{len(run.outcomes)} scenarios passed (accel {accel}, "
               f"boots: {', '.join(f'{k} {v:.1f}s' for k, v in run.boots.items())})")
    out += [f"  {name}: {describe_source(doc)}" for name, doc in run.sources.items()]
    return "\n".join(out)


def describe_source(doc: dict[str, Any]) -> str:
    """One line naming what a component's build was made from."""
    text = str(doc.get("describe") or doc.get("base") or "unknown")
    subjects = doc.get("subjects") or []
    return text + "".join(f"\n      {s}" for s in subjects)


def _outcome_doc(o: Outcome) -> dict[str, Any]:
    return {"name": o.case.name, "summary": o.case.summary, "topology": o.case.topo.name,
            "set": o.case.describe_set(), "received": o.received, "passed": o.passed,
            "seconds": round(o.seconds, 3), "failures": o.failures, "steps": o.steps,
            "records": o.records, "snapshots": o.seen.snapshots, "dmesg": o.dmesg}


def to_json(run: Run) -> str:
    doc = {"accel": run.accel, "accel_reason": run.accel_reason, "passed": run.passed,
           "boots": run.boots,
           "logs": str(run.logs) if run.logs else None,
           "sources": run.sources,
           "scenarios": [_outcome_doc(o) for o in run.outcomes]}
    return json.dumps(doc, indent=2)


def to_junit(run: Run) -> str:
    fails = sum(not o.passed for o in run.outcomes)
    total = sum(o.seconds for o in run.outcomes)
    suites = ET.Element("testsuites", name="tphlab", tests=str(len(run.outcomes)),
                        failures=str(fails), time=f"{total:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=f"tphlab.{run.accel}",
                          tests=str(len(run.outcomes)), failures=str(fails), errors="0",
                          skipped="0", time=f"{total:.3f}")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="accel", value=run.accel)
    for name, doc in run.sources.items():
        ET.SubElement(props, "property", name=f"source.{name}", value=describe_source(doc))
    ET.SubElement(props, "property", name="accel_reason", value=run.accel_reason)
    for o in run.outcomes:
        tc = ET.SubElement(suite, "testcase", classname=f"tphlab.{o.case.topo.name}",
                           name=o.case.name, time=f"{o.seconds:.3f}")
        if not o.passed:
            f = ET.SubElement(tc, "failure", message=o.failures[0][:200], type="mismatch")
            f.text = "\n".join(o.failures)
        out = ET.SubElement(tc, "system-out")
        out.text = f"set: {o.case.describe_set()}\nreceived: {o.received}\n"
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def to_ktap(run: Run) -> str:
    lines = ["KTAP version 1", f"# tphlab accel={run.accel}", f"1..{len(run.outcomes)}"]
    if run.accel_reason:
        lines.insert(2, f"# tphlab accel_reason={run.accel_reason}")
    for name, doc in run.sources.items():
        text = describe_source(doc).replace("\n", "\n# ")
        lines.insert(-1, f"# tphlab source.{name}={text}")
    for i, o in enumerate(run.outcomes, 1):
        for f in o.failures:
            lines.append(f"# {o.case.name}: {f}")
        lines.append(f"{'ok' if o.passed else 'not ok'} {i} {o.case.name}")
    return "\n".join(lines) + "\n"


def markdown(doc: dict[str, Any]) -> str:
    """A `to_json` report as Markdown (a CI job summary)."""
    rows = doc.get("scenarios", [])
    npass = sum(bool(r["passed"]) for r in rows)
    why = f" ({doc['accel_reason']})" if doc.get("accel_reason") else ""
    out = [f"### tphlab: {npass}/{len(rows)} scenarios passed (accel {doc.get('accel')}{why})",
           "",
           "| scenario | set | received | verdict |", "| --- | --- | --- | --- |"]

    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    for r in rows:
        out.append(f"| {cell(r['name'])} | {cell(r['set'])} | {cell(r['received'])} | "
                   f"{'PASS' if r['passed'] else '**FAIL**'} |")
    for r in rows:
        for f in r.get("failures", []):
            out.append(f"- `{r['name']}`: {cell(f)}")
    for name, src in (doc.get("sources") or {}).items():
        out.append(f"- {name}: {cell(describe_source(src))}")
    return "\n".join(out)
