"""The kernel series as its maintainers check it (rig check kernel-series)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rig import series
from rig.paths import kernel_series_dir

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_series_is_checkpatch_clean_bisectable_and_warning_free() -> None:
    res = subprocess.run([sys.executable, "-m", "rig", "check", "kernel-series"], cwd=REPO,
                         capture_output=True, text=True, timeout=5400, check=False,
                         env=dict(os.environ))
    print(res.stdout)
    patches = series.series_files(kernel_series_dir())
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-4000:]
    assert f"{len(patches)}/{len(patches)} patches clean" in res.stdout
    for p in patches:
        assert f"ok   {p.name}" in res.stdout
