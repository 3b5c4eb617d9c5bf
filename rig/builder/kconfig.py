"""Kernel config fragments: parsing, and checking that every option stuck."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rig.errors import ConfigError

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse(text: str, source: str = "config") -> dict[str, str]:
    """Option -> value ("n" for unset) of a .config or a fragment."""
    opts: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _SET.match(line)
        if m:
            opts[m.group(1)] = m.group(2)
            continue
        m = _UNSET.match(line)
        if m:
            opts[m.group(1)] = "n"
            continue
        if line.startswith("#"):
            continue
        raise ConfigError(f"{source}:{n}: not a config line: {raw!r}",
                          fix="write CONFIG_NAME=value or '# CONFIG_NAME is not set'")
    return opts


@dataclass(frozen=True)
class Mismatch:
    option: str
    wanted: str
    got: str

    def __str__(self) -> str:
        got = "not set" if self.got == "n" else self.got
        wanted = "not set" if self.wanted == "n" else self.wanted
        return f"{self.option}: asked {wanted}, got {got}"


def check(fragment: dict[str, str], config: dict[str, str]) -> list[Mismatch]:
    """Options of the fragment whose value the final config does not hold."""
    return [Mismatch(opt, want, config.get(opt, "n"))
            for opt, want in fragment.items() if config.get(opt, "n") != want]


def check_files(fragment: Path, config: Path) -> None:
    bad = check(parse(fragment.read_text(), str(fragment)), parse(config.read_text(), str(config)))
    if bad:
        lines = "\n".join(f"    {m}" for m in bad)
        raise ConfigError(
            f"{len(bad)} option(s) of {fragment.name} were dropped or changed by "
            f"olddefconfig:\n{lines}",
            fix="add the options they depend on to the fragment (see `make menuconfig`, "
                "search with /) or fix the value")
