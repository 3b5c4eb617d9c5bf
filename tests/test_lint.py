"""The project's own code stays ruff- and mypy --strict-clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)


def test_ruff_clean() -> None:
    res = _run("ruff", "check", "rig", "tests")
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict_clean() -> None:
    res = _run("mypy", "--strict", "rig", "tests")
    assert res.returncode == 0, res.stdout + res.stderr
