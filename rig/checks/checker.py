"""Running a checker (checkpatch, kernel-doc, sparse) whose findings are its output."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_checker(tree: Path, argv: list[str], log: Path) -> str:
    """Run a checker whose findings are its output (its exit status is not the verdict)."""
    res = subprocess.run(argv, cwd=tree, capture_output=True, text=True, timeout=1800,
                         check=False)
    with log.open("a") as f:
        f.write(f"$ {' '.join(argv)}\n{res.stdout}{res.stderr}")
    return res.stdout + res.stderr
