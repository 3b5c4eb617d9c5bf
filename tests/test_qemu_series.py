"""The QEMU series is clean under QEMU's own scripts/checkpatch.pl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rig import series
from rig.paths import qemu_series_dir

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_every_patch_is_checkpatch_clean() -> None:
    res = subprocess.run([sys.executable, "-m", "rig", "build", "qemu", "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=5400, check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    entry = Path(json.loads(res.stdout)["components"]["qemu"]["entry"])
    tree = Path(json.loads((entry / "meta.json").read_text())["tree"])
    patches = series.series_files(qemu_series_dir())
    assert patches, "qemu-device/ holds no series"
    for patch in patches:
        out = subprocess.run(["perl", str(tree / "scripts/checkpatch.pl"), str(patch)],
                             cwd=tree, capture_output=True, text=True, timeout=300,
                             check=False)
        assert out.returncode == 0 and "total: 0 errors, 0 warnings" in out.stdout, \
            f"{patch.name}:\n{out.stdout[-3000:]}"
