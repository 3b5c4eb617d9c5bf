"""Running a checker (checkpatch, kernel-doc, sparse) whose findings are its output."""

from __future__ import annotations

from pathlib import Path

from rig import proc


def run_checker(tree: Path, argv: list[str], log: Path) -> str:
    """Run a checker whose findings are its output (its exit status is not the verdict)."""
    res = proc.run_captured(argv, cwd=tree, timeout=1800, what=argv[0])
    with log.open("a") as f:
        f.write(f"$ {' '.join(argv)}\n{res.stdout}{res.stderr}")
    return res.stdout + res.stderr
