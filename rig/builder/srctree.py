"""`rig src` and `rig export`: a tree to edit the series in, and back to files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from rig.builder import context, qemu_build, series, sources
from rig.errors import RigError, SeriesError
from rig.paths import kernel_series_dir, qemu_series_dir

FORMAT_PATCH = ["format-patch", "--zero-commit", "--no-signature"]


def series_dir(component: sources.Component) -> Path:
    return kernel_series_dir() if component == "kernel" else qemu_series_dir()


def cover_description(cover: str) -> str | None:
    """Subject and blurb of a cover letter, as a branch description."""
    m = re.search(r"^Subject: \[PATCH[^\]]*\] (.*(?:\n [^\n]*)*)$", cover, re.M)
    if not m:
        return None
    subject = " ".join(m.group(1).split())
    body = cover[cover.index("\n\n", m.end()) + 2:] if "\n\n" in cover[m.end():] else ""
    stop = re.search(r"^\S[^\n]* \(\d+\):$", body, re.M)
    blurb = body[:stop.start()] if stop else body
    return f"{subject}\n\n{blurb.strip()}\n"


def make_src(ctx: context.BuildContext, src: sources.Source, dest: Path) -> Path:
    """A git clone at the pinned base with the series applied as commits."""
    if src.kind == "tree":
        raise RigError("rig src needs a pinned source, not a user tree",
                       fix="drop --qemu-tree/--kernel-tree: your tree is already editable")
    if dest.exists() and any(dest.iterdir()):
        raise RigError(f"{dest} exists and is not empty", fix="name a new directory")
    comp = src.component
    patches = context.series_for(src, series_dir(comp))
    prep = qemu_build.prepare_source if comp == "qemu" else None
    _, log, tree = context.source_tree(ctx, src, series_dir(comp), f"{comp}-src", prep)
    ctx.progress.begin(f"{comp}: cloning into {dest}")
    series.git(dest.parent if dest.parent.exists() else Path.cwd(), "clone", "-q",
               "--no-checkout", str(tree), str(dest), log=log, timeout=1800)
    series.git(dest, "checkout", "-q", "-b", "tphlab", "origin/tphlab-series", log=log,
               timeout=1800)
    series.git(dest, "config", "tphlab.component", comp)
    cover = series_dir(comp) / series.COVER_LETTER
    if cover.is_file():
        desc = cover_description(cover.read_text())
        if desc:
            series.git(dest, "config", "branch.tphlab.description", desc)
    ctx.progress.done(f"branch tphlab = {series.BASE_TAG} + {len(patches)} patches")
    return dest


def export(component: sources.Component, tree: Path, out: Path | None = None) -> list[Path]:
    """Write tree's commits since BASE_TAG as the series (format-patch)."""
    out = out or series_dir(component)
    try:
        series.git(tree, "rev-parse", "--verify", "-q", series.BASE_TAG)
    except RigError as exc:
        raise SeriesError(f"{tree} has no {series.BASE_TAG} tag: not a `rig src` tree",
                          fix=f"make one with `rig src {component} DIR`") from exc
    count = int(series.git(tree, "rev-list", "--count", f"{series.BASE_TAG}..HEAD").strip())
    if count == 0:
        raise SeriesError(f"{tree} has no commits on top of {series.BASE_TAG}",
                          fix="commit your changes first")
    # The cover letter is from the series' author, not from the rig
    first = series.git(tree, "log", "--reverse", "--format=%an%x00%ae",
                       f"{series.BASE_TAG}..HEAD").splitlines()[0]
    name, email = first.split("\0")
    args = ["-c", f"user.name={name}", "-c", f"user.email={email}", *FORMAT_PATCH]
    had_cover = (out / series.COVER_LETTER).is_file()
    if had_cover:
        desc = series.git(tree, "config", "--default", "", "branch.tphlab.description")
        args += ["--cover-letter"] + (["--cover-from-description=subject"] if desc.strip()
                                      else [])
    tmp = out.with_name(out.name + ".export")
    shutil.rmtree(tmp, ignore_errors=True)
    series.git(tree, *args, "-q", "-o", str(tmp), f"{series.BASE_TAG}..HEAD")
    for old in out.glob("*.patch"):
        old.unlink()
    written = []
    for p in sorted(tmp.glob("*.patch")):
        dest = out / p.name
        shutil.move(p, dest)
        written.append(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return written


__all__ = ["export", "make_src"]
