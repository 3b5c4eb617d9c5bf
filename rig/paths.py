"""Where things live: the repository's inputs and the build cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"


def repo_root() -> Path:
    """The checkout holding qemu-device/, kernel-patches/ and guest-image/.

    TPHLAB_REPO overrides it (tests point it at scratch copies).
    """
    env = os.environ.get("TPHLAB_REPO")
    if env:
        return Path(env).resolve()
    # The checkout the package runs from (an editable install or the source
    # tree). A copy installed elsewhere has no series next to it: the series'
    # readers then fail with an error naming TPHLAB_REPO, never build unpatched.
    return PACKAGE_DIR.parent


def cache_root() -> Path:
    """$XDG_CACHE_HOME/tphlab, default ~/.cache/tphlab."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tphlab"


def qemu_series_dir() -> Path:
    return repo_root() / "qemu-device"


def kernel_series_dir() -> Path:
    return repo_root() / "kernel-patches"


def guest_image_dir() -> Path:
    return repo_root() / "guest-image"


def kernel_fragment() -> Path:
    return kernel_series_dir() / "tphlab.config"


def importer_dir() -> Path:
    """The test importer: an out-of-tree module built against the kernel under test."""
    return repo_root() / "importer"


def run_dir(kind: str) -> Path:
    """A new directory for one run's logs: $cache/runs/KIND-TIME-PID."""
    base = cache_root() / "runs" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1000):           # several in one second (the bench): -1, -2, ...
        d = base.with_name(f"{base.name}-{n}") if n else base
        try:
            d.mkdir()
        except FileExistsError:
            continue
        return d
    raise FileExistsError(f"{base}: a thousand run directories in one second")
