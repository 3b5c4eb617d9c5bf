"""Both series as their maintainers check them: rig check kernel-series / qemu-series.

Each patch must be checkpatch-clean and each commit must build on its own
(the kernel check also compares kernel-doc, W=1 and sparse with the base).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rig.builder import series
from rig.paths import kernel_series_dir, qemu_series_dir

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


@pytest.mark.parametrize("what,series_dir", [("kernel-series", kernel_series_dir),
                                             ("qemu-series", qemu_series_dir)])
def test_every_patch_is_clean_and_builds_on_its_own(what: str,
                                                    series_dir: Callable[[], Path]) -> None:
    patches = series.series_files(series_dir())
    assert patches, f"no {what} to check"
    res = subprocess.run([sys.executable, "-m", "rig", "check", what], cwd=REPO,
                         capture_output=True, text=True, timeout=5400, check=False,
                         env=dict(os.environ))
    print(res.stdout)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-4000:]
    assert f"{len(patches)}/{len(patches)} patches clean" in res.stdout
    for p in patches:
        assert f"ok   {p.name}" in res.stdout
