"""Running a checker (checkpatch, kernel-doc, sparse), and the report of a series check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rig import proc


def run_checker(tree: Path, argv: list[str], log: Path) -> str:
    """Run a checker whose findings are its output (its exit status is not the verdict)."""
    res = proc.run_captured(argv, cwd=tree, timeout=1800, what=argv[0])
    with log.open("a") as f:
        f.write(f"$ {' '.join(argv)}\n{res.stdout}{res.stderr}")
    return res.stdout + res.stderr


def render(rows: Sequence[tuple[str, Sequence[tuple[str, Sequence[str]]], str]]) -> str:
    """One line per patch (ok/FAIL), its findings by label, its build error, a total.

    rows: (patch name, [(label, findings)], build error or "").
    """
    out = []
    clean = 0
    for patch, findings, build in rows:
        ok = not build and not any(items for _, items in findings)
        clean += ok
        out.append(f"{'ok  ' if ok else 'FAIL'} {patch}")
        for label, items in findings:
            out += [f"       {label}: {i}" for i in items]
        if build:
            out.append(f"       build: {build}")
    out.append(f"{clean}/{len(rows)} patches clean")
    return "\n".join(out)
