"""Which patches of a series to take: the list-and-range part of `b4 am -P`.

`1-3`, `1,3`, `2-` (2 to the last), `1-2,4,6-`: numbers are the N of the
patches' N/M. b4's other forms (`_`, the message id given; `*glob*`, by
subject) are not supported and are refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rig.errors import SeriesError

_PART = re.compile(r"^(\d+)(?:(-)(\d*))?$")
SYNTAX = "N, N-M or N- (N to the last), separated by commas, as b4 am -P takes them"


@dataclass(frozen=True)
class Pick:
    """A parsed -P spec: inclusive ranges, `None` as the end meaning "to the last"."""

    spec: str
    ranges: tuple[tuple[int, int | None], ...]

    def numbers(self, total: int) -> list[int]:
        """The patch numbers of a series of `total` this picks, in order."""
        return [n for n in range(1, total + 1)
                if any(lo <= n and (hi is None or n <= hi) for lo, hi in self.ranges)]


def parse(spec: str) -> Pick:
    """Parse `spec`; SeriesError names the part that is not one of SYNTAX."""
    ranges: list[tuple[int, int | None]] = []
    for part in spec.replace(" ", "").split(","):
        m = _PART.match(part)
        if not m:
            raise SeriesError(f"--patches {spec!r}: {part!r} is not a patch number or range",
                              fix=f"give {SYNTAX} (b4's _ and *glob* forms are not supported)")
        lo = int(m.group(1))
        hi = None if m.group(2) and not m.group(3) else int(m.group(3) or lo)
        if lo < 1 or (hi is not None and hi < lo):
            raise SeriesError(f"--patches {spec!r}: {part!r} is an empty range",
                              fix="patches are numbered from 1, and a range goes upwards")
        ranges.append((lo, hi))
    return Pick(spec, tuple(ranges))


def describe(numbers: list[int]) -> str:
    """"1-3,5" for [1, 2, 3, 5]."""
    out: list[str] = []
    for n in numbers:
        if out and n == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out)


__all__ = ["SYNTAX", "Pick", "describe", "parse"]
