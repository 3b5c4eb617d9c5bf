"""A tree without a piece of the series' API stops before anything is built, naming it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rig.builder import api_probe
from rig.errors import SourceError

REPO = Path(__file__).resolve().parent.parent
PATCHES = sorted((REPO / "kernel-patches").glob("000[1-9]-*.patch"))
# The patches up to the one that adds the uAPI (the selftest comes after it)
BEFORE_VFIO = next(i for i, p in enumerate(PATCHES) if "DMA_BUF_TPH" in p.name
                   and "selftests" not in p.name)
BASE_VFIO = ("#define VFIO_DEVICE_FEATURE_DMA_BUF 11\nstruct vfio_device_feature_dma_buf {\n"
             "\t__u32 region_index;\n};\n")


def added_lines(patch: Path, file: str) -> str:
    """The lines a patch of our series adds to `file`."""
    out, on = [], False
    for ln in patch.read_text().splitlines():
        if ln.startswith("diff --git "):
            on = ln.endswith(f" b/{file}")
        elif on and ln.startswith("+") and not ln.startswith("+++"):
            out.append(ln[1:])
    return "\n".join(out) + "\n"


def fake_tree(root: Path, upto: int) -> Path:
    """Headers of the base plus what patches 1..upto of our series add to them."""
    for rel, base in (("include/linux/pci-tph.h", "int pcie_enable_tph(void);\n"),
                      ("include/linux/dma-buf.h", "struct dma_buf_ops {\n};\n"),
                      ("include/uapi/linux/vfio.h", BASE_VFIO)):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(base + "".join(added_lines(p, rel) for p in PATCHES[:upto]))
    return root


def test_the_whole_series_meets_every_need(tmp_path: Path) -> None:
    assert api_probe.missing(fake_tree(tmp_path, len(PATCHES))) == []
    api_probe.check(tmp_path, "t")


def test_a_tree_without_the_vfio_patch_names_symbol_file_and_patch(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as exc:
        api_probe.check(fake_tree(tmp_path, BEFORE_VFIO), "--kernel-tree T")
    msg = exc.value.message
    assert "VFIO_DEVICE_FEATURE_DMA_BUF_TPH: not in include/uapi/linux/vfio.h" in msg
    assert "6/7 \"vfio/pci: Add VFIO_DEVICE_FEATURE_DMA_BUF_TPH\"" in msg
    assert "dma_buf_get_pci_tph" not in msg


def test_each_patch_adds_what_it_is_named_for(tmp_path: Path) -> None:
    # 1/7 and 2/7 (the completer-type and prefix-path fixes) and 4/7 (an
    # export) add no API; 3/7, 5/7 and 6/7 one piece each; 7/7 is a selftest
    adds = {3: api_probe.PATCH_PCI, 5: api_probe.PATCH_DMABUF, 6: api_probe.PATCH_VFIO}
    assert len(PATCHES) == 7
    for upto in range(len(PATCHES) + 1):
        gone = api_probe.missing(fake_tree(tmp_path / str(upto), upto))
        assert {n.added_by for n in gone} == {name for i, name in adds.items() if i > upto}


def _kbuild_finds_attachment_api(header: Path) -> bool:
    """Whether importer/Kbuild's test takes `header` for the series' shape."""
    kbuild = (REPO / "importer/Kbuild").read_text()
    m = re.search(r"grep -sE '([^']+)'", kbuild)
    assert m, "importer/Kbuild no longer tells the two shapes of dma_buf_get_pci_tph() apart"
    res = subprocess.run(["grep", "-sE", m.group(1), str(header)], capture_output=True)
    return res.returncode == 0


def test_the_importer_build_tells_the_series_from_v11(tmp_path: Path) -> None:
    """The test importer calls dma_buf_get_pci_tph() with the attachment on
    the series and with the dma-buf on v8..v11; Kbuild reads which."""
    header = fake_tree(tmp_path, len(PATCHES)) / "include/linux/dma-buf.h"
    assert _kbuild_finds_attachment_api(header)
    header.write_text(header.read_text().replace(
        "dma_buf_get_pci_tph(struct dma_buf_attachment *attach,",
        "dma_buf_get_pci_tph(struct dma_buf *dmabuf,"))
    assert "dma_buf_get_pci_tph(struct dma_buf *dmabuf," in header.read_text()
    assert not _kbuild_finds_attachment_api(header)


def test_the_v1_to_v7_shape_is_named(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path, len(PATCHES))
    header = tree / "include/linux/dma-buf.h"
    header.write_text(re.sub(r"get_pci_tph", "get_tph", header.read_text()))
    with pytest.raises(SourceError, match=r"v1\.\.v7 shape: the dma-buf op is get_tph"):
        api_probe.check(tree, "T")


def test_a_qemu_tree_without_the_device_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"tph-testdev: not in hw/misc/tph-testdev\.c"):
        api_probe.check_qemu(tmp_path, "--qemu-tree Q")


def test_rig_stops_in_seconds_on_such_a_tree(tmp_path: Path, cache_home: Path) -> None:
    tree = fake_tree(tmp_path / "linux", BEFORE_VFIO)
    (tree / "Makefile").write_text("all:\n")
    res = subprocess.run([sys.executable, "-m", "rig", "build", "kernel", "--kernel-tree",
                          str(tree)], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=False,
                         env={**os.environ, "XDG_CACHE_HOME": str(cache_home.parent)})
    assert res.returncode == 2, res.stderr
    assert "VFIO_DEVICE_FEATURE_DMA_BUF_TPH: not in include/uapi/linux/vfio.h" in res.stderr
    assert not (cache_home / "work").exists() or not any((cache_home / "work").iterdir())
