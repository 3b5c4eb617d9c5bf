"""rig bench prints every figure and marks each against its target; it asserts no timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rig import bench

REPO = Path(__file__).resolve().parent.parent

FIGURES = ("no-op build", "boot to SSH", "QEMU peak RSS", "guest ready (restore)",
           "boot / restore", "DMA into recording BAR", "DMA into RAM", "recording overhead",
           "query 4096 records", "guests per matrix", "guests per matrix, unpacked",
           "warm matrix", "warm matrix, unpacked", "warm matrix, booting",
           "warm matrix, booting, unpacked", "warm matrix, booting / boot to SSH",
           "one scenario (matrix median)", "edit to verdict", "edit to full verdict",
           "edit to full verdict / boot to SSH", "3 runs at once", "3 runs at once / one run",
           "generic-fuzz exec/s, tph-testdev-switch", "device lines not covered",
           "device branches not covered", "  packed work / cores / boot to SSH",
           "uAPI fuzz operations/s (debug kernel)")


def test_a_figure_is_met_only_below_its_target() -> None:
    f = bench.figure("x", [3.0, 1.0, 2.0], 2.5)
    assert (f.median, f.low, f.high, f.runs, f.met) == (2.0, 1.0, 3.0, 3, True)
    assert bench.figure("x", [3.0], 2.5).met is False
    assert bench.figure("x", [3.0], None).met is None
    assert "NOT MET" in bench.figure("x", [3.0], 2.5).line()
    assert bench.figure("x", [3.0], 2.5, "x").line().split()[1] == "3.000x"
    # Columns line up whatever the names' lengths.
    rows = [bench.figure(n, [v], t).line(34) for n, v, t in
            (("boot to SSH", 2.5, 2.5), ("  hostile-set-ext-8bit-completer", 0.138, None))]
    assert rows[0].index("2.500") == rows[1].index("0.138")
    assert rows[0].index("(min") == rows[1].index("(min")


def test_warm_samples_count_each_arrangement_once_it_has_its_snapshots() -> None:
    """A first round that had to boot (no snapshot yet) is not a sample, for
    the packed and the unpacked matrix each on its own: with the packed
    guests' snapshots already saved and the unpacked not, `runs` samples of
    both still come out (a CI run once printed no unpacked sample at all)."""
    calls: list[tuple[bool, int]] = []

    def warm(pack: bool, i: int) -> bench.WarmRun:
        calls.append((pack, i))
        booted = i == 1 and not pack
        return bench.WarmRun(float(10 * i + pack), booted, {"a": 0.1 * i} if pack else {})

    for runs in (1, 3):
        calls.clear()
        wholes, per_case = bench.warm_samples(warm, runs)
        assert wholes == {True: [float(10 * i + 1) for i in range(1, runs + 1)],
                          False: [float(10 * i) for i in range(2, runs + 2)]}
        assert per_case == {"a": [0.1 * i for i in range(1, runs + 1)]}
        # Alternated while both need samples, then only the one that still does.
        assert calls[:2] == [(True, 1), (False, 1)]
        assert calls[-1] == (False, runs + 1)


def test_every_target_names_a_figure_the_bench_prints() -> None:
    for accel in ("tcg", "kvm"):
        assert set(bench.targets(accel)) == {"noop_build", "boot_to_ssh", "restore_ready",
                                             "warm_matrix", "one_scenario",
                                             "query_4096", "edit_to_verdict",
                                             "booting_matrix_per_boot",
                                             "edit_to_full_verdict_per_boot",
                                             "device_lines_not_covered"}


@pytest.mark.integration
def test_bench_prints_every_figure_with_its_verdict(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "rig", "bench", "--runs", "1", "--json",
                          str(out)], cwd=REPO, capture_output=True, text=True, timeout=3600,
                         check=False, env=dict(os.environ))
    print(res.stdout)   # the figures, for `pytest -rP` and CI's log
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads(out.read_text())
    names = [f["name"] for f in doc["figures"]]
    for name in FIGURES:
        assert name in names, names
        line = next(ln for ln in res.stdout.splitlines() if ln.startswith(name))
        fig = next(f for f in doc["figures"] if f["name"] == name)
        if fig["target"] is not None:
            assert line.rstrip().endswith(("met", "NOT MET")), line
        assert fig["median"] > 0
