"""`rig check qemu-series`: each QEMU patch checkpatch-clean and building on its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from rig import tools
from rig.builder import context, qemu_build, series, sources
from rig.checks import checker
from rig.checks.checker import run_checker
from rig.errors import RigError
from rig.paths import qemu_series_dir

CHECKPATCH_CLEAN = "total: 0 errors, 0 warnings"


@dataclass
class QemuPatchReport:
    patch: str
    checkpatch: list[str] = field(default_factory=list)
    build: str = ""

    @property
    def clean(self) -> bool:
        return not (self.checkpatch or self.build)


def run(ctx: context.BuildContext, src: sources.Source) -> list[QemuPatchReport]:
    tools.require(["perl", "gcc", "ninja", "git"], "the QEMU series check")
    if src.kind == "tree":
        raise RigError("rig check qemu-series checks the series in qemu-device/",
                       fix="drop --qemu-tree")
    patches = context.series_for(src, qemu_series_dir())
    _work, log, tree = context.source_tree(ctx, src, qemu_series_dir(), "qemu-check",
                                            qemu_build.prepare_source, work_name="qemu-check")
    commits = series.git(tree, "rev-list", "--reverse", f"{series.BASE_TAG}..HEAD").split()
    bdir = qemu_build.build_dir(tree)
    reports: list[QemuPatchReport] = []
    try:
        for patch, commit in zip(patches, commits, strict=True):
            rep = QemuPatchReport(patch.name)
            reports.append(rep)
            ctx.progress.begin(f"qemu-check: {patch.name}")
            out = run_checker(tree, ["perl", "scripts/checkpatch.pl", str(patch)], log)
            if CHECKPATCH_CLEAN not in out:
                rep.checkpatch = [ln for ln in out.splitlines()
                                  if ln.startswith(("ERROR:", "WARNING:", "total:"))]
            series.git(tree, "checkout", "-q", "--detach", commit, log=log)
            # Devices a later patch adds exist from its commit on; all at the end.
            qemu_build.configure(ctx, tree, bdir, log, strict=commit == commits[-1])
            targets = [qemu_build.BINARY]
            if (tree / (qemu_build.QTEST + ".c")).is_file():
                targets.append(qemu_build.QTEST)
            try:
                qemu_build.compile_targets(ctx, tree, bdir, targets, log)
            except RigError as exc:
                rep.build = exc.message
            ctx.progress.note(f"{patch.name}: {'clean' if rep.clean else 'problems'}")
    finally:
        series.git(tree, "checkout", "-q", "--detach", series.SERIES_REF)
    return reports


def render(reports: list[QemuPatchReport]) -> str:
    return checker.render([(r.patch, [("checkpatch", r.checkpatch)], r.build) for r in reports])
