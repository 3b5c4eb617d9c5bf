"""tphctl's output read back: its JSON lines as the typed records of
rig.scenarios.protocol, a line that names no step or lacks a field a
ProtocolError naming both."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from rig.scenarios.protocol import (
    ADDED,
    FIELDS,
    KINDS,
    Answer,
    Counts,
    Line,
    ProtocolError,
    Result,
    Rows,
)

L = TypeVar("L", bound=Line)


def split(stdout: str) -> tuple[list[dict[str, Any]], list[str]]:
    """tphctl's JSON lines as objects, and the lines that began as one but do not
    parse (a process killed mid-line). Other output is not tphctl's."""
    lines: list[dict[str, Any]] = []
    garbled: list[str] = []
    for text in stdout.splitlines():
        text = text.strip()
        if text.startswith("{"):
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError:
                garbled.append(text)
    return lines, garbled


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _answers(value: object) -> tuple[Answer, ...] | None:
    if not isinstance(value, list):
        return None
    out = []
    for a in value:
        if not (isinstance(a, list) and len(a) == 3 and all(_is_int(v) for v in a)):
            return None
        out.append((a[0], a[1], a[2]))
    return tuple(out)


def _ints(value: object) -> tuple[int, ...] | None:
    if not (isinstance(value, list) and all(_is_int(v) for v in value)):
        return None
    return tuple(value)


def _rows(value: object) -> Rows | None:
    if not isinstance(value, list):
        return None
    rows = [_ints(v) for v in value]
    return None if any(r is None for r in rows) else tuple(r for r in rows if r is not None)


def _read(hint: Any, value: object) -> object | None:
    """The field's value if `value` has the field's type, else None."""
    if hint is int:
        return value if _is_int(value) else None
    if hint is str:
        return value if isinstance(value, str) else None
    if hint == Counts:
        return _ints(value)
    if hint == Rows:
        return _rows(value)
    return _answers(value)


_WANTED = {int: "an integer", str: "a string", Counts: "a list of integers",
           Rows: "a list of lists of integers"}


def record(obj: Mapping[str, Any], where: str = "") -> Line:
    """The record of one JSON line; ProtocolError names the step and the field."""
    name = obj.get("step")
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ProtocolError(f"tphctl output{where}: field \"step\" is {json.dumps(name)}, "
                            f"no step tphctl has: {json.dumps(obj)[:200]}")
    values: dict[str, object] = {}
    absent = ADDED.get(kind, frozenset()) - obj.keys()
    for field, hint in FIELDS[kind]:
        if field in absent:
            continue
        if field not in obj:
            raise ProtocolError(f"tphctl step \"{name}\"{where}: field \"{field}\" is missing")
        value = _read(hint, obj[field])
        if value is None:
            raise ProtocolError(f"tphctl step \"{name}\"{where}: field \"{field}\" is "
                                f"{json.dumps(obj[field])[:80]}, not "
                                f"{_WANTED.get(hint, 'a list of [ret, st, ph]')}")
        values[field] = value
    return kind(**values, absent=frozenset(absent))


def records(lines: Iterable[Mapping[str, Any]]) -> list[Line]:
    return [record(obj, f" (line {i + 1})") for i, obj in enumerate(lines)]


def parse(stdout: str) -> tuple[list[Line], list[str]]:
    """tphctl's output as records, and its garbled lines (see split)."""
    lines, garbled = split(stdout)
    return records(lines), garbled


class Steps:
    """A scenario's step lines as records, all read up front (ProtocolError at a bad one)."""

    def __init__(self, lines: Iterable[Mapping[str, Any]]) -> None:
        self.lines = records(lines)

    def find(self, kind: type[L], nth: int = 0) -> L | None:
        """The nth record of this kind, or None."""
        found = [ln for ln in self.lines if isinstance(ln, kind)]
        return found[nth] if len(found) > nth else None

    def result(self, name: str, nth: int = 0) -> Result | None:
        """The nth outcome of the step called `name`, or None."""
        found = [ln for ln in self.lines if isinstance(ln, Result) and name == ln.NAME]
        return found[nth] if len(found) > nth else None

    def every(self, *kinds: type[L]) -> list[L]:
        """The records of these kinds, in the order tphctl printed them."""
        return [ln for ln in self.lines if isinstance(ln, kinds)]
