"""The build cache: entries keyed by a hash of every input, written atomically.

An entry is a directory `<cache>/<component>/<key>/` holding the artifacts
and `meta.json`. It is assembled under a temporary name and renamed into
place only when complete, so an interrupted build is never taken for a hit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from rig.errors import CacheError

# Bump when the way a component is built changes in a way its inputs do not show.
RECIPE_VERSION = "1"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def input_key(inputs: dict[str, Any]) -> str:
    """A stable hash of a JSON-able description of every input."""
    blob = json.dumps({"recipe": RECIPE_VERSION, **inputs}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def tree_digest(root: Path) -> str:
    """One hash over every file's path and content below root (symlinks by target)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root)).encode()
        if p.is_symlink():
            h.update(b"L" + rel + b"\0" + os.readlink(p).encode() + b"\0")
        elif p.is_file():
            h.update(b"F" + rel + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def files_inputs(paths: list[Path], root: Path) -> dict[str, str]:
    """Name -> content hash for each file; names relative to root."""
    out: dict[str, str] = {}
    for p in paths:
        try:
            name = str(p.relative_to(root))
        except ValueError:
            name = str(p)
        out[name] = file_digest(p)
    return out


@dataclass(frozen=True)
class Entry:
    path: Path
    meta: dict[str, Any]

    def artifact(self, name: str) -> Path:
        return self.path / name


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def entry_dir(self, component: str, key: str) -> Path:
        return self.root / "artifacts" / component / key

    def lookup(self, component: str, key: str) -> Entry | None:
        d = self.entry_dir(component, key)
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if not all((d / a).exists() for a in meta.get("artifacts", {}).values()):
            return None
        return Entry(d, meta)

    @contextmanager
    def new_entry(self, component: str, key: str) -> Iterator[Path]:
        """Yield a scratch directory; it becomes the entry only if the block ends well.

        The caller writes artifacts there; `commit` writes meta.json last.
        """
        final = self.entry_dir(component, key)
        tmp = final.with_name(f".{key}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            yield tmp
            if not (tmp / "meta.json").is_file():
                raise CacheError(f"internal: {component} entry has no meta.json")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def purge_partials(self) -> None:
        for d in (self.root / "artifacts").glob("*/.*.partial-*"):
            shutil.rmtree(d, ignore_errors=True)

    @contextmanager
    def locked(self, timeout: float = 3600.0,
               on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """One rig build at a time per cache (two would fight for 2 cores and the trees);
        on_wait is told when another rig's build holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.root / "lock", timeout=timeout)
        try:
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                if on_wait is not None:
                    on_wait(f"waiting for another rig's build to finish (the lock "
                            f"{self.root / 'lock'}, at most {timeout:.0f} s)")
                lock.acquire(poll_interval=0.5)
        except filelock.Timeout:
            raise CacheError(f"the cache {self.root} is locked by another rig build",
                             fix="wait for it to end, or stop it") from None
        try:
            yield
        finally:
            lock.release()


def write_meta(entry_dir: Path, meta: dict[str, Any]) -> None:
    (entry_dir / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
