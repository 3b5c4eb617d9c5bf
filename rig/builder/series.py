"""A scratch git tree at a pinned base with a patch series applied by `git am`.

Re-applying a changed series keeps the modification time of every file
whose content did not change, so make and ninja rebuild only what the
changed patches touch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from rig import proc
from rig.errors import SeriesError

BASE_TAG = "tphlab-base"
SERIES_REF = "refs/heads/tphlab-series"
COVER_LETTER = "0000-cover-letter.patch"
GIT_ID = ["-c", "user.name=tphlab rig", "-c", "user.email=rig@tphlab.invalid",
          "-c", "advice.detachedHead=false", "-c", "core.autocrlf=false",
          "-c", "gc.auto=0", "-c", "maintenance.auto=false"]
# Fixed committer dates keep commit ids, and so exports, reproducible.
GIT_ENV = {"GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000"}


def series_files(series_dir: Path) -> list[Path]:
    """The series' patches in order, without the cover letter.

    A missing or empty series directory is an error, never "no patches":
    building the pinned base unpatched would test nothing of the bench.
    """
    patches = sorted(p for p in series_dir.glob("*.patch") if p.name != COVER_LETTER)
    if not patches:
        raise SeriesError(f"no series in {series_dir}: the rig would build unpatched sources",
                          fix="run the rig from a tphlab checkout (pip install -e .), set "
                              "TPHLAB_REPO to one, or pass --qemu-tree/--kernel-tree")
    return patches


def git(tree: Path, *args: str, log: Path | None = None, timeout: float = 600) -> str:
    if log is not None:
        proc.run(["git", *GIT_ID, *args], cwd=tree, log=log, env=GIT_ENV, timeout=timeout,
                 error=SeriesError, what=f"git {args[0]}")
        return ""
    return proc.capture(["git", "-C", str(tree), *GIT_ID, *args], timeout=timeout)


def import_tree(src: Path, message: str, log: Path,
                prepare: Callable[[Path], str | None] | None = None) -> None:
    """Make `src` (an unpacked source) a git repository tagged BASE_TAG.

    `prepare` may adjust the tree for the build (for example a tarball that
    lacks firmware blobs); its change is committed separately, with the
    message it returns, so the base stays an honest upstream snapshot.
    """
    shutil.rmtree(src / ".git", ignore_errors=True)
    git(src, "init", "-q", log=log)
    git(src, "add", "-A", "-f", log=log, timeout=1800)
    git(src, "commit", "-q", "--no-verify", "-m", message, log=log)
    if prepare is not None:
        msg = prepare(src)
        if msg:
            git(src, "commit", "-q", "-a", "--no-verify", "-m", msg, log=log)
    git(src, "tag", "-f", BASE_TAG, log=log)


def _changed(tree: Path, a: str, b: str) -> set[str]:
    out = git(tree, "diff", "--name-only", "--no-renames", a, b)
    return {line for line in out.splitlines() if line}


def apply(tree: Path, patches: list[Path], log: Path) -> str:
    """Reset `tree` to BASE_TAG and `git am` the patches; return the new HEAD."""
    old_head = git(tree, "rev-parse", "HEAD").strip()
    touched = _changed(tree, BASE_TAG, old_head)
    mtimes: dict[str, tuple[int, int]] = {}
    for name in touched:
        try:
            st = os.stat(tree / name)
            mtimes[name] = (st.st_atime_ns, st.st_mtime_ns)
        except FileNotFoundError:
            pass
    if (tree / ".git" / "rebase-apply").exists():
        git(tree, "am", "--abort")
    _refresh(tree)
    git(tree, "checkout", "-q", "-f", "--detach", BASE_TAG, log=log)
    for i, patch in enumerate(patches, 1):
        try:
            git(tree, "am", "-q", "--no-3way", "--committer-date-is-author-date", str(patch),
                log=log)
        except SeriesError as exc:
            detail = _explain_failure(tree, patch, log)
            git(tree, "am", "--abort")
            git(tree, "checkout", "-q", "-f", "--detach", BASE_TAG)
            raise SeriesError(
                f"patch {i}/{len(patches)} {patch.name} does not apply: {detail}",
                fix=f"rebase or fix {patch} (rig src gives a tree to do it in; "
                    "rig export writes the series back)", log=str(log)) from exc
    new_head = git(tree, "rev-parse", "HEAD").strip()
    git(tree, "update-ref", SERIES_REF, new_head)
    same = set(mtimes) - _changed(tree, old_head, new_head)
    for name in same:
        path = tree / name
        if path.exists():
            os.utime(path, ns=mtimes[name])
    _refresh(tree)
    return new_head


def _refresh(tree: Path) -> None:
    """Re-read stat data into the index, so checkout trusts files whose times we restored."""
    proc.capture(["git", "-C", str(tree), "update-index", "-q", "--refresh"], check=False,
                 timeout=600)


_FAILED = re.compile(r"error: patch failed: (\S+):(\d+)")
_CORRUPT = re.compile(r"(error: corrupt patch at line \d+|fatal: .*|error: .*does not exist.*|"
                      r"error: No valid patches in input.*|Patch is empty.*)")


def _explain_failure(tree: Path, patch: Path, log: Path) -> str:
    text = log.read_text(errors="replace").splitlines()[-40:]
    joined = "\n".join(text)
    fails = list(_FAILED.finditer(joined))
    if fails:
        m = fails[-1]
        path, line = m.group(1), int(m.group(2))
        hunk = failing_hunk(patch.read_text(errors="replace"), path, line)
        return f"hunk at {path}:{line} fails\n{hunk}"
    c = _CORRUPT.search(joined)
    return c.group(1) if c else "git am failed (see the log)"


def failing_hunk(patch_text: str, path: str, line: int, max_lines: int = 12) -> str:
    """The hunk of `patch_text` for `path` that starts at old line `line`."""
    in_file = False
    lines = patch_text.splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith("diff --git "):
            in_file = ln.endswith(f" b/{path}")
        elif in_file and ln.startswith((f"@@ -{line},", f"@@ -{line} ")):
            body = lines[i:i + max_lines]
            return "\n".join(f"    | {b}" for b in body)
    return f"    | (hunk at line {line} of {path})"


def write_state(path: Path, state: Mapping[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(path)


def read_state(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
