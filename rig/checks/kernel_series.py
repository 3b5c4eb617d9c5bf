"""`rig check kernel-series`: the series as kernel maintainers check it.

For every patch: checkpatch --strict clean; at every commit the tree
builds with the fragment (bisectable), and on the files the patch touches
neither kernel-doc -Wall nor W=1 plus sparse (C=2) report anything the
base did not (files the series touches carry some upstream kernel-doc
warnings of their own; those are not the series').
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from rig import tools
from rig.builder import context, kernel_build, series, sources, sparse
from rig.checks import checker
from rig.checks.checker import run_checker
from rig.errors import RigError
from rig.paths import kernel_fragment, kernel_series_dir

# bzImage for what is built in, modules for anything a patch makes modular
TARGETS = ["bzImage", "modules"]

CHECKPATCH_CLEAN = "total: 0 errors, 0 warnings, 0 checks"
SPARSE_OFF = "is not available or not up to date"
_WARN = re.compile(r"^(?P<file>[\w./+-]+\.[ch]):\d+(?::\d+)?: (?P<kind>warning|error): "
                   r"(?P<msg>.*)$")


@dataclass
class PatchReport:
    patch: str
    checkpatch: list[str] = field(default_factory=list)
    kerneldoc: list[str] = field(default_factory=list)
    build: str = ""
    new_warnings: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.checkpatch or self.kerneldoc or self.build or self.new_warnings)


def checkpatch(tree: Path, patch: Path, log: Path) -> list[str]:
    argv = ["perl", "scripts/checkpatch.pl", "--strict"]
    if added_files_maintained(tree, patch):
        # Its question "added file(s), does MAINTAINERS need updating?" is
        # answered: an entry of the tree's MAINTAINERS covers every new file
        argv += ["--ignore", "FILE_PATH_CHANGES"]
    out = run_checker(tree, [*argv, str(patch)], log)
    if CHECKPATCH_CLEAN in out:
        return []
    return [ln for ln in out.splitlines()
            if ln.startswith(("ERROR:", "WARNING:", "CHECK:", "total:"))] or [out[-400:]]


def added_files(patch: Path) -> list[str]:
    """The files a patch creates (`--- /dev/null` then `+++ b/PATH`)."""
    lines = patch.read_text(errors="replace").splitlines()
    return [b.removeprefix("+++ b/") for a, b in itertools.pairwise(lines)
            if a == "--- /dev/null" and b.startswith("+++ b/")]


def added_files_maintained(tree: Path, patch: Path) -> bool:
    """Whether the patch adds files and an F: entry of the tree's MAINTAINERS
    covers each (a directory pattern ending in "/" its whole subtree, a glob
    what it matches, as get_maintainer.pl reads them)."""
    added = added_files(patch)
    maintainers = tree / "MAINTAINERS"
    if not added or not maintainers.is_file():
        return False
    patterns = [ln[2:].strip() for ln in maintainers.read_text(errors="replace").splitlines()
                if ln.startswith("F:")]
    return all(any(_covers(p, f) for p in patterns) for f in added)


def _covers(pattern: str, path: str) -> bool:
    if pattern.endswith("/"):
        return path.startswith(pattern) or fnmatch.fnmatch(path, pattern + "*")
    return path == pattern or fnmatch.fnmatch(path, pattern)


def warnings_for(text: str, files: set[str], root: Path,
                 bdir: Path | None = None) -> set[tuple[str, str]]:
    """(file, message) pairs of compiler/sparse warnings on `files`; line numbers dropped.

    A file is named as the compiler was given it: absolute, relative to the
    tree, or relative to the build directory bdir (Kbuild's `../` for a
    build directory inside the tree).
    """
    found = set()
    for ln in text.splitlines():
        m = _WARN.match(ln.strip())
        if not m:
            continue
        rel = tree_relative(m.group("file"), root, bdir)
        if rel in files:
            found.add((rel, re.sub(r"\s+", " ", m.group("msg"))))
    return found


def tree_relative(name: str, root: Path, bdir: Path | None) -> str:
    if name.startswith("/"):
        path = Path(name)
    elif name.startswith("../") and bdir is not None:
        path = bdir / name
    else:
        return name
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return name


def objects(files: set[str], tree: Path, bdir: Path | None = None) -> list[str]:
    """Objects of the touched C files; with bdir, only those the config builds."""
    objs = (f[:-2] + ".o" for f in files if f.endswith(".c") and (tree / f).exists())
    return sorted(o for o in objs if bdir is None or (bdir / o).exists())


_DOC_LINE = re.compile(r"^(?P<head>.*?\.[ch]):\d+ ")


def kerneldoc_warnings(tree: Path, files: set[str], log: Path) -> set[str]:
    """kernel-doc -Wall findings on files, line numbers dropped (so moves do not count)."""
    docs = sorted(f for f in files if f.endswith((".c", ".h")) and (tree / f).exists())
    if not docs:
        return set()
    out = run_checker(tree, ["perl", "scripts/kernel-doc", "-none", "-Wall", *docs], log)
    return {_DOC_LINE.sub(r"\g<head> ", ln.strip()) for ln in out.splitlines() if ln.strip()}


def checker_warnings(tree: Path, bdir: Path, make: list[str], objs: list[str],
                     files: set[str], log: Path) -> set[tuple[str, str]]:
    """W=1 and sparse (C=2) findings on files when building objs (make has CHECK=)."""
    if not objs:
        return set()
    out = run_checker(tree, [*make, "W=1", "C=2", *objs], log)
    if SPARSE_OFF in out:
        raise RigError("Kbuild turned sparse off: the installed sparse cannot check this "
                       "kernel", fix="install a newer sparse (Debian sid has 0.6.5)",
                       log=str(log))
    return warnings_for(out, files, tree, bdir)


def run(ctx: context.BuildContext, src: sources.Source) -> list[PatchReport]:
    tools.require(["perl", "gcc", "make", "git"], "the kernel series check")
    if src.kind == "tree":
        raise RigError("rig check kernel-series checks a series (kernel-patches/ or "
                       "--kernel-series), not a tree", fix="drop --kernel-tree")
    patches = context.series_for(src, kernel_series_dir())
    _work, log, tree = context.source_tree(ctx, src, kernel_series_dir(), "kernel-check",
                                            work_name="kernel-check")
    commits = series.git(tree, "rev-list", "--reverse", f"{series.BASE_TAG}..HEAD").split()
    bdir = kernel_build.build_dir(tree)
    # The fragment selects DMA_SHARED_BUFFER (through DMABUF_HEAPS), so every
    # commit compiles vfio-pci's dma-buf code that the series touches.
    fragment = kernel_fragment()
    reports: list[PatchReport] = []
    try:
        series.git(tree, "checkout", "-q", "--detach", series.BASE_TAG, log=log)
        kernel_build.configure(ctx, tree, bdir, fragment, log, strict=False, force=True)
        # Kbuild silently turns C=2 off if the checker is too old for the kernel.
        make = [*kernel_build.make_args(tree, bdir), f"CHECK={sparse.checker(ctx)}"]
        all_touched: set[str] = set()
        for c in commits:
            all_touched |= set(series.git(tree, "diff", "--name-only", f"{c}~1", c).split())
        ctx.progress.begin("kernel-check: base build and warnings")
        kernel_build.compile_kernel(ctx, tree, bdir, TARGETS, log)
        base_objs = objects(all_touched, tree, bdir)
        base_docs = kerneldoc_warnings(tree, all_touched, log)
        base_warn = checker_warnings(tree, bdir, make, base_objs, all_touched, log)
        for patch, commit in zip(patches, commits, strict=True):
            rep = PatchReport(patch.name)
            reports.append(rep)
            ctx.progress.begin(f"kernel-check: {patch.name}")
            rep.checkpatch = checkpatch(tree, patch, log)
            series.git(tree, "checkout", "-q", "--detach", commit, log=log)
            touched = set(series.git(tree, "diff", "--name-only", f"{commit}~1", commit).split())
            rep.kerneldoc = sorted(kerneldoc_warnings(tree, touched, log) - base_docs)
            last = commit == commits[-1]
            try:
                # Options a patch adds exist from its commit on: reconfigure each time,
                # and require the whole fragment at the end of the series.
                kernel_build.configure(ctx, tree, bdir, fragment, log, strict=last,
                                       force=True)
                kernel_build.compile_kernel(ctx, tree, bdir, TARGETS, log)
            except RigError as exc:
                rep.build = exc.message
                continue
            objs = objects(touched, tree, bdir)
            got = checker_warnings(tree, bdir, make, objs, touched, log)
            rep.new_warnings = sorted(f"{f}: {m}" for f, m in got - base_warn)
            ctx.progress.note(f"{patch.name}: {'clean' if rep.clean else 'problems'}")
    finally:
        series.git(tree, "checkout", "-q", "--detach", series.SERIES_REF)
    return reports


def render(reports: list[PatchReport]) -> str:
    return checker.render([(r.patch, [("checkpatch", r.checkpatch),
                                      ("new kernel-doc", r.kerneldoc),
                                      ("new W=1/sparse warning", r.new_warnings)], r.build)
                           for r in reports])
