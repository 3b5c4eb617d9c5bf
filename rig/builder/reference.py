"""Whether a kernel is the reference series: our kernel-patches/, told by git patch-id.

The bench's uAPI checks (an errno, a return value) are the contract our
series defines. On our series a difference there is a fault like any
other; on another version of the series (a posted vN, a user's tree with
an edit) it is a difference of opinion, reported apart from faults on the
wire. What decides is the code, not where it came from: the patch-ids of
the patches applied (or of a tree's last commits) against those of
kernel-patches/, in order. A tree with uncommitted changes is not the
reference, whatever its commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rig import proc
from rig.builder import series
from rig.builder.sources import Source
from rig.errors import SourceError
from rig.paths import kernel_series_dir

TIMEOUT = 120.0      # seconds for one git command


def _git(*args: str, stdin: str | None = None) -> str:
    res = proc.run_captured(["git", *args], timeout=TIMEOUT, input=stdin, error=SourceError,
                            what=f"git {args[0]}")
    if res.returncode:
        raise SourceError(f"git {' '.join(args[:3])} failed: {res.stderr.strip()[-500:]}",
                          fix="check that git works on this tree (git status)")
    return res.stdout


def patch_ids(diffs: str) -> list[str]:
    """`git patch-id --stable` of each patch in `diffs` (mails or `git log -p`), in order."""
    return [line.split()[0] for line in _git("patch-id", "--stable", stdin=diffs).splitlines()
            if line.strip()]


def of_files(patches: Sequence[Path]) -> list[str]:
    """The patch-id of each patch file (a patch that changes nothing has none)."""
    return patch_ids("".join(p.read_text(errors="replace") for p in patches))


def of_tree(path: str, count: int) -> list[str]:
    """The patch-ids of the last `count` commits of the git tree at `path`, oldest first."""
    return patch_ids(_git("-C", path, "log", "-p", "--no-merges", "--reverse",
                          "--format=commit %H", f"-{count}", "HEAD"))


def ours() -> list[str]:
    return of_files(series.series_files(kernel_series_dir()))


def is_reference(src: Source) -> bool:
    """Whether `src` builds our series: its own patches, a series from mails
    with the same patch-ids, or a clean git tree whose last commits are them."""
    if src.mails is not None:
        return of_files(src.mails.patches) == ours()
    if src.tree is not None:
        tree = src.tree
        if not tree.git or tree.dirty or not tree.head:
            return False
        want = ours()
        return of_tree(tree.path, len(want)) == want
    return True        # the repository's own series on a pinned base
