"""What every component build shares: the work area, the cache, the log."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.builder import cache as cachemod
from rig.builder import series, sources
from rig.paths import cache_root
from rig.progress import Progress


@dataclass
class BuildContext:
    progress: Progress
    root: Path = field(default_factory=cache_root)
    force: bool = False

    @property
    def cache(self) -> cachemod.Cache:
        return cachemod.Cache(self.root)

    def work(self, name: str) -> Path:
        d = self.root / "work" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def log(self, name: str) -> Path:
        d = self.root / "logs"
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{name}.log"


@dataclass(frozen=True)
class Result:
    component: str
    key: str
    entry: Path
    artifacts: dict[str, Path]
    cached: bool
    seconds: float
    meta: dict[str, Any]


def finish(ctx: BuildContext, component: str, key: str,
           produce: Callable[[Path], dict[str, Any]], cacheable: bool = True) -> Result:
    """Return the cache entry for key, building it with `produce` on a miss.

    cacheable False (a tree with no content identity): always `produce`,
    which make or ninja keep incremental.

    `produce(tmpdir)` puts the artifacts into tmpdir and returns the meta,
    whose "artifacts" maps names to file names inside the entry.
    """
    started = time.monotonic()
    hit = None if ctx.force or not cacheable else ctx.cache.lookup(component, key)
    if hit is not None:
        arts = {k: hit.path / v for k, v in hit.meta["artifacts"].items()}
        ctx.progress.note(f"{component}: cached ({key}), no work done")
        return Result(component, key, hit.path, arts, True, time.monotonic() - started, hit.meta)
    with ctx.cache.new_entry(component, key) as tmp:
        meta = produce(tmp)
        meta.update({"component": component, "key": key,
                     "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "seconds": round(time.monotonic() - started, 1)})
        cachemod.write_meta(tmp, meta)
    entry = ctx.cache.entry_dir(component, key)
    arts = {k: entry / v for k, v in meta["artifacts"].items()}
    return Result(component, key, entry, arts, False, time.monotonic() - started, meta)


def prepare_tree(ctx: BuildContext, src: sources.Source, work: Path, log: Path,
                 patches: list[Path],
                 prepare: Callable[[Path], str | None] | None = None) -> Path:
    """The source tree to build: the user's tree, or a scratch tree with the series."""
    if src.kind == "tree":
        return Path(src.location)
    tree = work / "src"
    state_path = work / "state.json"
    state = series.read_state(state_path)
    if state.get("source") != src.identity() or not (tree / ".git").is_dir():
        ctx.progress.begin(f"{src.component}: fetching {src.describe()}")
        tarball = sources.fetch(src, ctx.root / "downloads", log, ctx.root / "apt")
        ctx.progress.begin(f"{src.component}: unpacking {tarball.name} into a scratch git tree")
        state_path.unlink(missing_ok=True)
        sources.extract(tarball, tree, log)
        series.import_tree(tree, f"{src.component} {src.version} ({src.describe()})", log,
                           prepare)
        series.write_state(state_path, {"source": src.identity()})
        ctx.progress.done("ready")
    ctx.progress.begin(f"{src.component}: applying {len(patches)} patches with git am")
    head = series.apply(tree, patches, log)
    ctx.progress.done(f"HEAD {head[:12]}")
    return tree


def series_for(src: sources.Source, series_dir: Path) -> list[Path]:
    """The patches to apply: none for a user's tree, which is built as is; a
    series from mails instead of the repository's own."""
    if src.kind == "tree":
        return []
    if src.mails is not None:
        return list(src.mails.patches)
    return series.series_files(series_dir)


def series_key(patches: list[Path]) -> list[tuple[str, str]]:
    """The series as the cache key sees it: each patch's position, name and content."""
    return [(p.name, cachemod.file_digest(p)) for p in patches]


def source_tree(ctx: BuildContext, src: sources.Source, series_dir: Path, stage: str,
                prepare: Callable[[Path], str | None] | None = None,
                work_name: str | None = None) -> tuple[Path, Path, Path]:
    """Work area, fresh log and ready source tree of one build stage."""
    if work_name is None:
        # A user tree's build directory is kept per path (make and ninja are
        # incremental there); what is cached is keyed by its content.
        work_name = src.component if src.kind != "tree" else \
            f"{src.component}-tree-{cachemod.input_key({'t': src.location})}"
    work = ctx.work(work_name)
    log = ctx.log(stage)
    log.write_text("")
    tree = prepare_tree(ctx, src, work, log, series_for(src, series_dir), prepare)
    return work, log, tree
