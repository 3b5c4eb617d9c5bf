"""What the build stage hands on: a typed request in, one typed object out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.builder import context, image_build, kernel_build, qemu_build, selftest_build, sources
from rig.paths import kernel_series_dir, qemu_series_dir
from rig.progress import Progress

COMPONENTS = ("qemu", "kernel", "image", "all")


@dataclass(frozen=True)
class Artifacts:
    """What a guest boots from."""

    qemu: Path
    bios: Path
    datadir: Path
    kernel: Path
    initrd: Path
    client_key: Path
    host_key: Path
    # The kernel's `uname -v` as its build linked it; a boot checks that the
    # guest runs that kernel (None: not known, not checked).
    kernel_version: str | None = None


@dataclass(frozen=True)
class Request:
    """What to build: `what` of COMPONENTS, from these sources, in this variant."""

    what: str = "all"
    qemu: sources.Source | None = None
    kernel: sources.Source | None = None
    kernel_config: str = "default"
    sanitize: bool = False
    force: bool = False


@dataclass(frozen=True)
class Built:
    """The results of one request, by component (qemu, kernel, image)."""

    results: dict[str, context.Result]
    request: Request | None = None

    def guest(self) -> Artifacts:
        q, k, i = (self.results[n].artifacts for n in ("qemu", "kernel", "image"))
        return Artifacts(q["qemu"], q["bios"], q["datadir"], k["kernel"], i["initramfs"],
                         i["client_key"], i["host_key"],
                         self.results["kernel"].meta.get("uts_version"))

    def sources(self) -> dict[str, dict[str, Any]]:
        """What each component was built from: the sources of this request (a
        cache hit for a user tree may have been built from another tree with
        the same content), else what its build recorded."""
        out: dict[str, dict[str, Any]] = {}
        series_dirs = {"qemu": qemu_series_dir(), "kernel": kernel_series_dir()}
        for name in ("qemu", "kernel"):
            if name not in self.results:
                continue
            src = getattr(self.request, name, None) if self.request is not None else None
            if isinstance(src, sources.Source):
                out[name] = src.detail(len(context.series_for(src, series_dirs[name])))
            else:
                meta = self.results[name].meta
                out[name] = dict(meta.get("source_detail") or {"describe": meta.get("source")})
        return out


def build(request: Request, progress: Progress) -> Built:
    """Build (or take from the cache) what the request needs, in dependency order.

    What a user's tree lacks stops the request before anything is built.
    """
    wants_qemu = request.what in ("qemu", "all")
    wants_kernel = request.what in ("kernel", "image", "all")
    if (wants_qemu and request.qemu is None) or (wants_kernel and request.kernel is None):
        raise ValueError(f"internal: a request for {request.what} lacks its sources")
    if wants_qemu and request.qemu is not None:
        qemu_build.preflight(request.qemu)
    if wants_kernel and request.kernel is not None:
        kernel_build.preflight(request.kernel)
    ctx = context.BuildContext(progress, force=request.force)
    results: dict[str, context.Result] = {}
    with ctx.cache.locked(on_wait=progress.note):
        ctx.cache.purge_partials()
        if wants_qemu and request.qemu is not None:
            results["qemu"] = qemu_build.build(ctx, request.qemu, request.sanitize)
        if wants_kernel and request.kernel is not None:
            results["kernel"] = kernel_build.build(ctx, request.kernel, request.kernel_config)
        if request.what in ("image", "all") and request.kernel is not None:
            results["selftests"] = selftest_build.build(ctx, request.kernel,
                                                        results["kernel"])
            results["image"] = image_build.build(ctx, results["kernel"],
                                                 results["selftests"])
    return Built(results, request)


__all__ = ["COMPONENTS", "Artifacts", "Built", "Request", "build"]
