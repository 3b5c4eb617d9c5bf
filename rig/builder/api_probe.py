"""Does a tree carry what the bench needs: the kernel series' API, QEMU's device?

Read from the headers before anything is built, so that a tree without a
piece of the series stops in seconds with the symbol, the file and the
patch of the series that adds it, instead of failing a build or a
scenario minutes later. Versions of the series from v8 on (the op named
get_pci_tph) are supported; v1..v7 named it get_tph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rig.errors import SourceError

PATCH_PCI = "3/7 \"PCI/TPH: Add pcie_tph_enabled_req_type() and pcie_tph_completer_type()\""
PATCH_DMABUF = "5/7 \"dma-buf: Add optional get_pci_tph op and dma_buf_get_pci_tph()\""
PATCH_VFIO = "6/7 \"vfio/pci: Add VFIO_DEVICE_FEATURE_DMA_BUF_TPH\""


@dataclass(frozen=True)
class Need:
    symbol: str
    file: str
    added_by: str
    pattern: re.Pattern[str]


def _need(symbol: str, file: str, added_by: str, pattern: str | None = None) -> Need:
    return Need(symbol, file, added_by, re.compile(pattern or rf"\b{re.escape(symbol)}\b"))


NEEDS = (
    _need("VFIO_DEVICE_FEATURE_DMA_BUF", "include/uapi/linux/vfio.h",
          "the base kernel (vfio-pci dma-buf export, in Linux 7.2)",
          r"#define\s+VFIO_DEVICE_FEATURE_DMA_BUF\s"),
    _need("pcie_tph_enabled_req_type", "include/linux/pci-tph.h", PATCH_PCI),
    _need("dma_buf_get_pci_tph", "include/linux/dma-buf.h", PATCH_DMABUF),
    _need("get_pci_tph", "include/linux/dma-buf.h", PATCH_DMABUF,
          r"\(\s*\*\s*get_pci_tph\s*\)"),
    _need("VFIO_DEVICE_FEATURE_DMA_BUF_TPH", "include/uapi/linux/vfio.h", PATCH_VFIO,
          r"#define\s+VFIO_DEVICE_FEATURE_DMA_BUF_TPH\s"),
    _need("struct vfio_device_feature_dma_buf_tph", "include/uapi/linux/vfio.h", PATCH_VFIO,
          r"\bstruct\s+vfio_device_feature_dma_buf_tph\s*\{"),
)
QEMU_NEEDS = (
    _need("tph-testdev", "hw/misc/tph-testdev.c",
          "qemu-device/ \"hw/misc: add tph-testdev\"", r"\"tph-testdev\""),
    _need("x-query-tph-hints", "qapi/tph.json",
          "qemu-device/ \"qapi: add x-query-tph-hints and x-tph-hints-clear\"",
          r"'x-query-tph-hints'"),
)
# The shape of v1..v7: the op and its wrapper were named get_tph.
_OLD_OP = re.compile(r"\(\s*\*\s*get_tph\s*\)|\bdma_buf_get_tph\b")


def missing(tree: Path, needs: tuple[Need, ...] = NEEDS) -> list[Need]:
    """The needs `tree` does not meet, in the order of the series."""
    texts: dict[str, str] = {}
    out = []
    for need in needs:
        if need.file not in texts:
            try:
                texts[need.file] = (tree / need.file).read_text(errors="replace")
            except FileNotFoundError:
                texts[need.file] = ""
        if not need.pattern.search(texts[need.file]):
            out.append(need)
    return out


def check_qemu(tree: Path, what: str) -> None:
    """Raise one error naming what of the bench's device `tree` lacks."""
    gone = missing(tree, QEMU_NEEDS)
    if gone:
        lines = [f"    {n.symbol}: not in {n.file} (added by {n.added_by})" for n in gone]
        raise SourceError(f"{what} lacks the bench's QEMU device:\n" + "\n".join(lines),
                          fix="apply the qemu-device/ series there (rig src qemu DIR gives a "
                              "tree with it), or test a QEMU series with --qemu-series")


def check(tree: Path, what: str) -> None:
    """Raise one error naming every missing piece of the API in `tree` (`what` names it)."""
    gone = missing(tree)
    if not gone:
        return
    header = tree / "include/linux/dma-buf.h"
    old = header.is_file() and bool(_OLD_OP.search(header.read_text(errors="replace")))
    lines = [f"    {n.symbol}: not in {n.file} (added by {n.added_by})" for n in gone]
    if old and any(n.added_by == PATCH_DMABUF for n in gone):
        raise SourceError(
            f"{what} has the TPH dma-buf series in its v1..v7 shape: the dma-buf op is "
            f"get_tph (include/linux/dma-buf.h), the bench needs the v8+ shape, where it "
            "is get_pci_tph with dma_buf_get_pci_tph():\n" + "\n".join(lines),
            fix="apply v8 or later of the series (rig run --kernel-series DIR_OR_MBOX)")
    raise SourceError(
        f"{what} lacks the TPH dma-buf series' API the bench needs:\n" + "\n".join(lines),
        fix="apply the missing patch(es) of the series there, or test the series with "
            "--kernel-series DIR_OR_MBOX (applied on the pinned base)")


__all__ = ["NEEDS", "QEMU_NEEDS", "Need", "check", "check_qemu", "missing"]
