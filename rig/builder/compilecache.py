"""The compiler cache (ccache) that every C build of the rig shares.

Each tree is built in a directory of its own inside the tree (BUILD_DIR),
so the compiler sees the same relative paths in every tree: a scratch tree
in the cache, the series check's tree and a user's tree of the same code
then give ccache the same command lines, and a second tree's build is
mostly cache hits. Absolute paths inside the tree are made relative
(base_dir is the tree being built) and the working directory is left out of
the hash (the build directories differ); debug info then names the directory
of the first tree that compiled an object. Paths outside the tree (the
system's -isystem directories: glib's, gcc's) stay absolute, so they are
the same whatever the tree's depth: with base_dir `/` they became `../..`
chains as long as the tree's path, and trees at different depths (a QEMU
tree's command lines are full of them) never shared an object. Depend
mode keeps a miss as cheap as a plain compile, which a cold machine's first
build is made of; it cannot see `.incbin`, so the kernel's compiler goes
through a guard (data/ccache-incbin-guard.sh) that compiles such a source
without ccache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rig import proc
from rig.errors import ConfigError, RigError
from rig.paths import cache_root

# The build directory of a tree, a direct subdirectory of it (Kbuild uses
# relative paths only there); a configuration suffix keeps others apart.
BUILD_DIR = ".tphlab-build"
MAX_SIZE = "16G"


def wrapper() -> str | None:
    """ccache's path, or None when it is not installed (builds are then uncached)."""
    return shutil.which("ccache")


INCBIN_GUARD = Path(__file__).resolve().parent.parent / "data" / "ccache-incbin-guard.sh"


def compiler(cc: str = "gcc", incbin_guard: bool = False) -> str:
    """The C compiler command, through ccache when it is installed.

    incbin_guard: through the guard script, which leaves ccache out for a
    source with `.incbin` (the kernel's piggy.S, initramfs_data.S, certs).
    QEMU's sources (roms/ aside, which are not built) hold none.
    """
    cc_path = wrapper()
    if not cc_path:
        return cc
    return f"sh {guard_script()} {cc_path} {cc}" if incbin_guard else f"{cc_path} {cc}"


def guard_script() -> Path:
    """The guard script at a path named by its content, in the rig's cache.

    Kbuild rebuilds every object whose command line changed, so the path
    must not depend on where this checkout is; a new guard is a new path,
    which rebuilds what the old one compiled.
    """
    text = INCBIN_GUARD.read_bytes()
    copy = cache_root() / "bin" / f"ccache-incbin-guard-{hashlib.sha256(text).hexdigest()[:12]}"
    if any(c.isspace() for c in str(copy)):
        raise ConfigError(f"the rig's cache {cache_root()} has a space in its path, and the "
                          "kernel's CC names a file in it", fix="set XDG_CACHE_HOME to a path "
                          "without spaces")
    if not copy.is_file() or copy.read_bytes() != text:
        copy.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=copy.parent, prefix=f".{copy.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(text)
        os.replace(tmp, copy)
    return copy


def cache_dir() -> str:
    """Where the objects are: CCACHE_DIR set by the caller (CI keeps one
    between jobs), otherwise inside the rig's cache, so emptying that cache
    empties it too."""
    return os.environ.get("CCACHE_DIR") or str(cache_root() / "ccache")


def settings(tree: Path) -> dict[str, str]:
    """ccache's configuration for a build of `tree`, as environment variables.

    The tree is absolute, so that it is a prefix of the paths it rewrites.
    """
    return {
        "CCACHE_DIR": cache_dir(),
        "CCACHE_BASEDIR": str(tree.resolve()),
        "CCACHE_NOHASHDIR": "1",
        # A miss runs the compiler once: the dependencies come from its -MD
        # file, not from a second run of the preprocessor.
        "CCACHE_DEPEND": "1",
        "CCACHE_MAXSIZE": MAX_SIZE,
    }


def build_dir_name(suffix: str = "") -> str:
    return BUILD_DIR + suffix


@dataclass(frozen=True)
class Stats:
    """ccache's counters: compilations taken from the cache and compiled."""
    hits: int = 0
    misses: int = 0

    def since(self, before: Stats) -> Stats:
        return Stats(self.hits - before.hits, self.misses - before.misses)

    def describe(self) -> str:
        total = self.hits + self.misses
        if not total:
            return "ccache: nothing compiled"
        return f"ccache: {self.hits}/{total} compilations were hits ({100 * self.hits // total}%)"


def parse_stats(text: str) -> Stats:
    """`ccache --print-stats` (one `name<TAB>value` per line) as Stats."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition("\t")
        if value.strip().isdigit():
            counts[name.strip()] = int(value)
    hits = counts.get("direct_cache_hit", 0) + counts.get("preprocessed_cache_hit", 0)
    return Stats(hits, counts.get("cache_miss", 0))


def stats() -> Stats | None:
    """The counters now, or None without ccache (or one too old to print them)."""
    cc = wrapper()
    if cc is None:
        return None
    try:
        res = proc.run_captured([cc, "--print-stats"], timeout=60,
                                env={"CCACHE_DIR": cache_dir()})
    except RigError:
        return None
    return parse_stats(res.stdout) if res.returncode == 0 else None


@dataclass(frozen=True)
class Compiled:
    """What one make or ninja run did: its steps, and ccache's part in them."""
    steps: int
    cache: Stats | None

    def describe(self, idle: str) -> str:
        if not self.steps:
            return idle
        return f"{self.steps} steps" + (f"; {self.cache.describe()}" if self.cache else "")

    def meta(self) -> dict[str, int]:
        return {} if self.cache is None else {"hits": self.cache.hits,
                                              "misses": self.cache.misses}


def counted(before: Stats | None, steps: int) -> Compiled:
    """A run's Compiled, from the counters before it and now."""
    after = stats() if before is not None else None
    return Compiled(steps, after.since(before) if after is not None and before is not None
                    else None)
