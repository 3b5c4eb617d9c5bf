"""QEMU's own qtest for tph-testdev, from the built series, passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_tph_testdev_qtest_passes(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "rig", "build", "qemu", "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=5400, check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    arts = json.loads(res.stdout)["components"]["qemu"]["artifacts"]
    assert "qtest" in arts, "the qemu-device series has no tests/qtest/tph-testdev-test.c"
    # A wrapper of the same name (qtest takes the target from it) adds the firmware
    # path; no default NIC, whose option ROM the +ds source lacks.
    wrapper = tmp_path / "qemu-system-x86_64"
    wrapper.write_text(f'#!/bin/sh\nexec "{arts["qemu"]}" -L "{arts["datadir"]}" -nic none "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "QTEST_QEMU_BINARY": str(wrapper)}
    run = subprocess.run([arts["qtest"], "--tap", "-k"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, check=False, env=env)
    print(run.stdout)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    oks = [ln for ln in run.stdout.splitlines() if ln.startswith("ok ")]
    assert oks and not any(ln.startswith("not ok") for ln in run.stdout.splitlines())
