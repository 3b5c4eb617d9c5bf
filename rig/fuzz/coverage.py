"""Line and branch coverage of tph-testdev and the TPH helpers, by replaying
generic-fuzz corpora on the sanitized build (which carries clang's
source-based coverage for the files of qemu_build.PROFILED).

libFuzzer's own counters are edges of code it instruments; what a reviewer
asks is which lines of the device ran. The corpus is replayed once
(libFuzzer's -runs=0), the counters merged with llvm-profdata and read with
llvm-cov: lines and branches (lcov form), and each function's extent (JSON),
so that lines are told apart by who can reach them: the guest, QMP, or the
command line and the device's life cycle (realize, its errors, migration).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig import tools
from rig.errors import ToolError
from rig.fuzz import sanitizers

DEVICE_FILE = "hw/misc/tph-testdev.c"
# Functions of DEVICE_FILE that the guest cannot call: QMP's, and those of
# the command line, realize/exit, type registration and migration
QMP_FUNCTIONS = frozenset({"tph_find", "qmp_x_query_tph_hints", "qmp_x_tph_hints_clear",
                           "tph_log_clear"})
SETUP_FUNCTIONS = frozenset({"tph_realize", "tph_parse_st_modes", "tph_exit", "tph_class_init",
                             "tph_testdev_register_types", "tph_post_load",
                             "tph_get_st_location", "tph_set_st_location"})
HELPER_FILES = ("hw/pci/pcie.c", "hw/pci/msix.c")
_TPH = re.compile(r"tph", re.I)


@dataclass
class Lines:
    """Covered lines out of the instrumented ones, and the missed ones."""

    covered: int = 0
    total: int = 0
    missed: list[int] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / self.total if self.total else 0.0

    def add(self, line: int, hit: bool) -> None:
        self.total += 1
        if hit:
            self.covered += 1
        else:
            self.missed.append(line)


@dataclass
class Coverage:
    guest: Lines            # DEVICE_FILE's guest-reachable functions
    qmp: Lines
    setup: Lines
    branches: Lines         # branches of the guest-reachable functions (by branch)
    helpers: Lines          # the TPH helpers' functions in HELPER_FILES
    missed_by_function: dict[str, list[int]]    # guest-reachable lines not run

    def to_dict(self) -> dict[str, object]:
        def one(x: Lines) -> dict[str, object]:
            return {"covered": x.covered, "total": x.total, "percent": round(x.percent, 1)}
        return {"guest_lines": one(self.guest), "qmp_lines": one(self.qmp),
                "setup_lines": one(self.setup), "guest_branches": one(self.branches),
                "tph_helper_lines": one(self.helpers),
                "missed_by_function": self.missed_by_function}


def replay(fuzzer: Path, config: str, inputs: Sequence[Path], workdir: Path) -> None:
    """Run every input of the directories `inputs` once, counting lines."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**sanitizers.env(), "LLVM_PROFILE_FILE": str(workdir / f"{config}-%p.profraw")}
    res = subprocess.run([str(fuzzer), f"--fuzz-target=generic-fuzz-{config}", "-runs=0",
                          *[str(p) for p in inputs]], capture_output=True, text=True,
                         errors="replace", env=env, timeout=3600, check=False)
    if res.returncode != 0:
        raise ToolError(f"replaying the corpus of {config} failed (exit {res.returncode}): "
                        f"{res.stderr[-1500:]}", fix="an input of the corpus crashes: run "
                        "`rig fuzz device` to save it with its reproducer")


def measure(fuzzer: Path, workdir: Path) -> Coverage:
    """Merge the counters replay() left in `workdir`, and read them."""
    tools.require(["llvm-profdata", "llvm-cov"], "fuzz coverage")
    raws = sorted(workdir.glob("*.profraw"))
    if not raws:
        raise ToolError(f"no counters in {workdir}", fix="replay a corpus first")
    merged = workdir / "merged.profdata"
    _run(["llvm-profdata", "merge", "-sparse", *map(str, raws), "-o", str(merged)])
    lcov = _run(["llvm-cov", "export", "-format=lcov", f"-instr-profile={merged}", str(fuzzer)])
    js = json.loads(_run(["llvm-cov", "export", "-format=text", "-skip-expansions",
                          f"-instr-profile={merged}", str(fuzzer)]))
    return from_exports(lcov, js)


def _run(argv: list[str]) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if res.returncode != 0:
        raise ToolError(f"{argv[0]} {argv[1]} failed: {res.stderr[-1500:]}",
                        fix="the fuzz build carries coverage only when built by this rig: "
                            "rig build qemu --sanitize")
    return res.stdout


def function_extents(js: Mapping[str, Any], suffix: str) -> list[tuple[str, int, int]]:
    """(name, first line, last line) of each function defined in the file
    ending in `suffix`, from llvm-cov's JSON export."""
    out = []
    for fn in js["data"][0]["functions"]:
        files = fn["filenames"]
        if not files or not files[0].endswith(suffix):
            continue
        own = [r for r in fn["regions"] if r[5] == 0]
        if own:
            name = fn["name"].split(":")[-1]
            out.append((name, min(r[0] for r in own), max(r[2] for r in own)))
    return out


def lcov_files(text: str) -> dict[str, tuple[dict[int, int], list[tuple[int, bool]]]]:
    """Per source file: line -> count (DA), and branches as (line, taken) (BRDA)."""
    out: dict[str, tuple[dict[int, int], list[tuple[int, bool]]]] = {}
    cur: tuple[dict[int, int], list[tuple[int, bool]]] | None = None
    for line in text.splitlines():
        if line.startswith("SF:"):
            cur = out.setdefault(line[3:], ({}, []))
        elif cur is not None and line.startswith("DA:"):
            n, count = line[3:].split(",")[:2]
            cur[0][int(n)] = int(count)
        elif cur is not None and line.startswith("BRDA:"):
            n, _block, _branch, taken = line[5:].split(",")
            cur[1].append((int(n), taken not in ("-", "0")))
    return out


def from_exports(lcov: str, js: Mapping[str, Any]) -> Coverage:
    files = lcov_files(lcov)
    dev = next((v for k, v in files.items() if k.endswith(DEVICE_FILE)), None)
    if dev is None:
        raise ToolError(f"the counters hold no line of {DEVICE_FILE}",
                        fix="rebuild with `rig build qemu --sanitize` (its -fprofile-list "
                            "names the file)")
    extents = function_extents(js, DEVICE_FILE)

    def owner(line: int) -> str:
        for name, first, last in extents:
            if first <= line <= last:
                return name
        return ""

    guest, qmp, setup, branches = Lines(), Lines(), Lines(), Lines()
    missed: dict[str, list[int]] = {}
    for line, count in sorted(dev[0].items()):
        fn = owner(line)
        part = qmp if fn in QMP_FUNCTIONS else setup if fn in SETUP_FUNCTIONS else guest
        part.add(line, count > 0)
        if part is guest and count == 0:
            missed.setdefault(fn or "(outside a function)", []).append(line)
    for line, taken in dev[1]:
        fn = owner(line)
        if fn not in QMP_FUNCTIONS and fn not in SETUP_FUNCTIONS:
            branches.add(line, taken)
    helpers = Lines()
    for suffix in HELPER_FILES:
        lines = next((v[0] for k, v in files.items() if k.endswith(suffix)), {})
        for name, first, last in function_extents(js, suffix):
            if _TPH.search(name):
                for line in range(first, last + 1):
                    if line in lines:
                        helpers.add(line, lines[line] > 0)
    return Coverage(guest, qmp, setup, branches, helpers, missed)


def render(cov: Coverage) -> str:
    rows = [("tph-testdev.c, guest-reachable lines", cov.guest),
            ("tph-testdev.c, guest-reachable branches", cov.branches),
            ("tph-testdev.c, QMP handlers' lines", cov.qmp),
            ("tph-testdev.c, set-up and life-cycle lines", cov.setup),
            ("TPH helpers (pcie.c, msix.c), lines", cov.helpers)]
    out = [f"{name:44} {x.covered:5d}/{x.total:<5d} {x.percent:5.1f}%" for name, x in rows]
    for fn, lines in cov.missed_by_function.items():
        out.append(f"  not run in {fn}: lines {_ranges(lines)}")
    return "\n".join(out)


def _ranges(lines: list[int]) -> str:
    parts: list[str] = []
    for n in lines:
        if parts and parts[-1].split("-")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ", ".join(parts)
