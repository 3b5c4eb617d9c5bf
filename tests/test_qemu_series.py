"""The QEMU series as its maintainers check it (rig check qemu-series)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rig import series
from rig.paths import qemu_series_dir

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_every_patch_is_checkpatch_clean_and_builds_on_its_own() -> None:
    res = subprocess.run([sys.executable, "-m", "rig", "check", "qemu-series"], cwd=REPO,
                         capture_output=True, text=True, timeout=5400, check=False,
                         env=dict(os.environ))
    print(res.stdout)
    patches = series.series_files(qemu_series_dir())
    assert patches, "qemu-device/ holds no series"
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-4000:]
    assert f"{len(patches)}/{len(patches)} patches clean" in res.stdout
    for p in patches:
        assert f"ok   {p.name}" in res.stdout
