"""A sparse that can check this kernel: the host's, or one built from Debian's source."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from rig import proc
from rig.builder import context, sources
from rig.builder.cache import input_key
from rig.errors import BuildError
from rig.hostfacts import compiler_version

# What Linux 7.2's scripts/checker-valid.sh asks of its checker.
PROBE = "static inline int u(const int *q)\n{\n\t__typeof_unqual__(*q) v = *q;\n\treturn v;\n}\n"


def usable(sparse: str) -> bool:
    if shutil.which(sparse) is None:
        return False
    with tempfile.NamedTemporaryFile("w", suffix=".c") as f:
        f.write(PROBE)
        f.flush()
        out = proc.run_captured([sparse, f.name], timeout=60, error=BuildError)
    return "error" not in out.stdout + out.stderr


def checker(ctx: context.BuildContext) -> str:
    """The sparse to pass as CHECK=: the host's if it can, else a cached build."""
    if usable("sparse"):
        return "sparse"
    src = sources.resolve("sparse")
    key = input_key({"source": src.identity(), "compiler": compiler_version()})

    def produce(out: Path) -> dict[str, Any]:
        log = ctx.log("sparse-build")
        log.write_text("")
        ctx.progress.begin(f"sparse: the host's is too old for this kernel; building "
                           f"{src.version} from Debian's source")
        tarball = sources.fetch(src, ctx.root / "downloads", log, ctx.root / "apt")
        tree = sources.extract(tarball, ctx.work("sparse") / "src", log)
        proc.run(["make", "-C", tree, "-j2", "sparse", "HAVE_LLVM=no", "HAVE_GTK=no",
                  "HAVE_SQLITE=no", "HAVE_LIBXML=no"], log=log, what="building sparse")
        shutil.copy2(tree / "sparse", out / "sparse")
        ctx.progress.done("built")
        return {"artifacts": {"sparse": "sparse"}, "source": src.describe()}

    return str(context.finish(ctx, "sparse", key, produce).artifacts["sparse"])
