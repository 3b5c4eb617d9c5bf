"""What a user's source tree holds right now, as a cache-key identity.

A tree is keyed by its content, never by its path: for a git work tree,
HEAD plus a digest of every uncommitted change (modified, added, deleted
and untracked files that .gitignore does not exclude); a tree that is not
a git work tree has no cheap content identity, so it is never taken from
the cache and make or ninja decide what to rebuild in its kept build
directory.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rig.errors import SourceError

# How long git may take to read the state of a large tree.
GIT_TIMEOUT = 300.0


@dataclass(frozen=True)
class TreeState:
    path: str
    git: bool
    head: str = ""            # commit id of HEAD ("" in a repository with no commit)
    changes: str = ""         # digest of the uncommitted changes, "" when clean
    changed_files: int = 0

    @property
    def dirty(self) -> bool:
        return bool(self.changes)

    @property
    def cacheable(self) -> bool:
        """Whether a cache entry can stand for this tree (only a git tree's state can)."""
        return self.git

    def identity(self) -> dict[str, str]:
        if not self.git:
            # The path only names the kept build directory: entries for such
            # a tree are never looked up (see `cacheable`).
            return {"kind": "tree", "git": "no", "path": self.path}
        return {"kind": "tree", "head": self.head, "changes": self.changes}

    def describe(self) -> str:
        if not self.git:
            return f"tree {self.path} (not a git work tree: rebuilt by make/ninja every time)"
        state = f"dirty, {self.changed_files} file(s) changed" if self.dirty else "clean"
        return f"tree {self.path} at {self.head[:12] or 'no commit'} ({state})"

    def detail(self) -> dict[str, object]:
        return {"kind": "tree", "path": self.path, "git": self.git, "head": self.head,
                "dirty": self.dirty, "changed_files": self.changed_files}


def _git(tree: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(tree), *args],
                              capture_output=True, timeout=GIT_TIMEOUT, check=False)
    except FileNotFoundError as exc:
        raise SourceError("git is not installed: a user tree's state cannot be read",
                          fix="apt-get install git") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"git took over {GIT_TIMEOUT:.0f} s to read the state of {tree}",
                          fix="run `git status` there once (it refreshes the index), "
                              "then retry") from exc


def _entry_digest(top: Path, rel: str) -> bytes:
    path = top / rel
    if path.is_symlink():
        return b"L" + os.readlink(path).encode()
    if path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return b"F" + h.digest()
    if path.is_dir():
        return b"D"           # a submodule or nested repository: its HEAD is not ours
    return b"-"               # deleted


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def read(tree: Path, exclude: Sequence[Path] = ()) -> TreeState:
    """The state of `tree`; paths under `exclude` (build directories) do not count."""
    tree = tree.resolve()
    inside = _git(tree, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != b"true":
        return TreeState(str(tree), git=False)
    top = Path(_git(tree, "rev-parse", "--show-toplevel").stdout.decode().strip())
    head = _git(tree, "rev-parse", "-q", "--verify", "HEAD").stdout.decode().strip()
    status = _git(tree, "status", "--porcelain=v1", "-z", "--untracked-files=all",
                  "--no-renames", "--ignore-submodules=all", "--", ".")
    if status.returncode != 0:
        raise SourceError(f"git status failed in {tree}: "
                          f"{status.stderr.decode(errors='replace').strip()}",
                          fix="repair the repository (git fsck) or pass a plain copy")
    # A build directory inside the tree does not count; one that holds the
    # tree (a tree kept in the cache) excludes nothing.
    roots = [r.resolve() for r in exclude if not _under(tree, [r.resolve()])]
    h = hashlib.sha256()
    count = 0
    for item in sorted(filter(None, status.stdout.split(b"\0"))):
        code, rel = item[:2], item[3:].decode(errors="surrogateescape")
        if _under((top / rel).resolve(), roots):
            continue
        h.update(code + b"\0" + rel.encode(errors="surrogateescape") + b"\0"
                 + _entry_digest(top, rel) + b"\0")
        count += 1
    return TreeState(str(tree), git=True, head=head,
                     changes=h.hexdigest()[:20] if count else "", changed_files=count)


__all__ = ["TreeState", "read"]
