"""Guest snapshots: a topology's guest saved once it is up and its devices are
bound, and restored on the next run instead of booted.

A snapshot is QEMU's migration stream in a file (rig.guest.vm: `file:` with
mapped-ram), in the cache at snapshots/KEY/ with a meta.json. KEY hashes
every input of that guest:

- the topology's name, and QEMU's command line without this run's own port
  and paths: the topology's devices,
  the accelerator, vCPUs, memory, the kernel command line, and the paths of
  QEMU, its firmware, the kernel and the initramfs, whose directories are the
  build cache's input keys (rig.builder.cache): another tree, config or image
  is another path;
- each of those files' size and modification time, so an entry rebuilt in
  place (`--force`) is another guest;
- the host CPU (KVM runs `-cpu host`) and FORMAT below.

What the rig did in the guest after boot (binding the devices) is in the
meta: a restore whose devices do not match it is stale. A snapshot that does
not restore is deleted by the caller, which then boots and says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rig.builder.artifacts import Artifacts
from rig.errors import RigError
from rig.guest.topology import Topology
from rig.guest.vm import guest_argv
from rig.paths import cache_root

FORMAT = 1
KEEP = 24          # snapshots kept; the least recently used go first


@runtime_checkable
class Savable(Protocol):
    """A guest that can be saved and restored (rig.guest.vm.VM)."""

    def save(self, state: Path, timeout: float = ...) -> None: ...
    def restore(self, state: Path, timeout: float = ...) -> None: ...


@dataclass(frozen=True)
class Snapshot:
    key: str
    dir: Path

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def meta_path(self) -> Path:
        return self.dir / "meta.json"

    def meta(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.meta_path.read_text())
        return data


def _host_cpu() -> str:
    """The host CPU's model and flags (the first CPU's lines of /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    wanted = ("model name", "flags")
    return "\n".join(ln for ln in text.split("\n\n", 1)[0].splitlines()
                     if ln.split(":", 1)[0].strip() in wanted)


def inputs(arts: Artifacts, topo: Topology, accel: str) -> dict[str, Any]:
    """Everything the key of this guest is made of (kept in its meta, to say what
    a snapshot is). OSError if an artifact is missing."""
    files = {}
    for name in ("qemu", "bios", "kernel", "initrd"):
        p = Path(getattr(arts, name)).resolve()
        st = p.stat()
        files[name] = {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {"format": FORMAT, "topology": topo.name, "argv": guest_argv(arts, topo, accel),
            "files": files,
            "host_cpu": hashlib.sha256(_host_cpu().encode()).hexdigest()}


def key_of(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


class Store:
    """The snapshots in the cache (cache/snapshots), safe to share between rigs:
    a snapshot is written in a scratch directory and renamed into place."""

    def __init__(self, root: Path | None = None, keep: int = KEEP) -> None:
        self.root = root if root is not None else cache_root() / "snapshots"
        self.keep = keep

    def entry(self, key: str) -> Snapshot:
        return Snapshot(key, self.root / key)

    def find(self, key: str) -> Snapshot | None:
        """The snapshot of this key, if one is complete (its use refreshes it)."""
        snap = self.entry(key)
        try:
            meta = snap.meta()
        except (OSError, ValueError):
            return None
        if meta.get("format") != FORMAT or not snap.state.is_file():
            return None
        with contextlib.suppress(OSError):
            os.utime(snap.dir)
        return snap

    def save(self, vm: Savable, key: str, meta: dict[str, Any], timeout: float = 60.0) -> Snapshot:
        """Save `vm` (running, devices bound) as the snapshot of `key`; it runs on.

        RigError if QEMU cannot save it (nothing is left in the cache then).
        """
        snap = self.entry(key)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.partial-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir()
        try:
            started = time.monotonic()
            vm.save(tmp / "state", timeout)
            full = {**meta, "format": FORMAT, "saved": time.time(),
                    "save_seconds": round(time.monotonic() - started, 3),
                    "bytes": (tmp / "state").stat().st_blocks * 512}
            (tmp / "meta.json").write_text(json.dumps(full, indent=1, sort_keys=True) + "\n")
            try:
                tmp.rename(snap.dir)
            except OSError:        # another rig saved the same guest first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.prune()
        return snap

    def delete(self, snap: Snapshot) -> None:
        shutil.rmtree(snap.dir, ignore_errors=True)

    def prune(self) -> None:
        """Keep the `keep` most recently used snapshots, and no scratch directory
        of a rig that is gone."""
        if not self.root.is_dir():
            return
        entries = []
        for d in self.root.iterdir():
            if d.name.startswith("."):
                pid = d.name.split(".partial-")[-1].split("-")[0]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    shutil.rmtree(d, ignore_errors=True)
                continue
            with contextlib.suppress(OSError):
                entries.append((d.stat().st_mtime, d))
        for _, d in sorted(entries, reverse=True)[self.keep:]:
            shutil.rmtree(d, ignore_errors=True)


def describe_failure(snap: Snapshot, exc: RigError) -> str:
    """What the run says about a snapshot that did not restore."""
    return (f"the snapshot {snap.key[:12]} did not restore ({exc.message.splitlines()[0]}): "
            "deleted; booting instead")


__all__ = ["FORMAT", "Savable", "Snapshot", "Store", "describe_failure", "inputs", "key_of"]
