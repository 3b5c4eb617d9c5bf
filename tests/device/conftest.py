"""Device-level fixtures: the built QEMU (cached build) and the switch rigs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rig.qdev.switch import QemuBin

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def qemu_bin() -> QemuBin:
    """The QEMU binary and firmware directory of `rig build qemu` (cached: about 1 s)."""
    res = subprocess.run([sys.executable, "-m", "rig", "build", "qemu", "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=5400, check=False)
    if res.returncode != 0:
        pytest.fail(f"rig build qemu failed:\n{res.stderr[-4000:]}")
    arts = json.loads(res.stdout)["components"]["qemu"]["artifacts"]
    return QemuBin(Path(arts["qemu"]), Path(arts["datadir"]))
