from __future__ import annotations

from pathlib import Path

from rig.checks import kernel_series

OUT = """\
  CC      drivers/vfio/pci/vfio_pci_dmabuf.o
drivers/vfio/pci/vfio_pci_dmabuf.c:120:5: warning: no previous prototype for 'f' [-Wproto]
drivers/vfio/pci/vfio_pci_dmabuf.c:130:5: warning: no previous prototype for 'f' [-Wproto]
/abs/tree/drivers/pci/tph.c:77:9: warning: incorrect type in argument 1 (different address spaces)
drivers/pci/other.c:1:1: warning: not ours
include/linux/pci.h:12: error: bad thing
../drivers/vfio/pci/vfio_pci_core.c:9:1: warning: from a build directory inside the tree
../../elsewhere/drivers/pci/tph.c:1:1: warning: not in the tree
"""


def test_warnings_are_keyed_by_file_and_message_without_lines() -> None:
    files = {"drivers/vfio/pci/vfio_pci_dmabuf.c", "drivers/pci/tph.c", "include/linux/pci.h",
             "drivers/vfio/pci/vfio_pci_core.c"}
    got = kernel_series.warnings_for(OUT, files, Path("/abs/tree"), Path("/abs/tree/.build"))
    assert got == {
        ("drivers/vfio/pci/vfio_pci_core.c", "from a build directory inside the tree"),
        ("drivers/vfio/pci/vfio_pci_dmabuf.c",
         "no previous prototype for 'f' [-Wproto]"),
        ("drivers/pci/tph.c", "incorrect type in argument 1 (different address spaces)"),
        ("include/linux/pci.h", "bad thing"),
    }


def test_objects_are_the_touched_c_files_that_exist(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a/x.c").write_text("")
    files = {"a/x.c", "a/gone.c", "a/x.h", "Kconfig"}
    assert kernel_series.objects(files, tmp_path) == ["a/x.o"]
    bdir = tmp_path / "build"
    assert kernel_series.objects(files, tmp_path, bdir) == [], "not built by the config: skipped"
    (bdir / "a").mkdir(parents=True)
    (bdir / "a/x.o").write_text("")
    assert kernel_series.objects(files, tmp_path, bdir) == ["a/x.o"]


def test_render_marks_each_patch() -> None:
    ok = kernel_series.PatchReport("0001-a.patch")
    bad = kernel_series.PatchReport("0002-b.patch", checkpatch=["WARNING: line too long"])
    text = kernel_series.render([ok, bad])
    assert "ok   0001-a.patch" in text and "FAIL 0002-b.patch" in text
    assert "checkpatch: WARNING: line too long" in text and "1/2 patches clean" in text


def test_a_checker_that_rejects_typeof_unqual_is_not_usable(tmp_path: Path) -> None:
    from rig.builder import sparse

    old = tmp_path / "old-sparse"
    old.write_text("#!/bin/sh\necho \"$1:3:9: error: undefined identifier '__typeof_unqual__'\"\n")
    new = tmp_path / "new-sparse"
    new.write_text("#!/bin/sh\nexit 0\n")
    for p in (old, new):
        p.chmod(0o755)
    assert not sparse.usable(str(old))
    assert sparse.usable(str(new))
    assert not sparse.usable(str(tmp_path / "missing"))


def test_new_files_under_a_maintained_directory_answer_checkpatchs_question(
        tmp_path: Path) -> None:
    """checkpatch asks whether MAINTAINERS needs updating for every added
    file; where an F: entry covers them all, the answer is no (the series'
    selftest, 7/7, adds one under tools/testing/selftests/vfio/)."""
    (tmp_path / "MAINTAINERS").write_text(
        "VFIO SELFTESTS\nF:\ttools/testing/selftests/vfio/\n"
        "PCI TPH\nF:\tdrivers/pci/tph*.c\n")
    patch = tmp_path / "p.patch"

    def adds(*files: str) -> bool:
        patch.write_text("".join(f"--- /dev/null\n+++ b/{f}\n@@ -0,0 +1 @@\n+x\n"
                                 for f in files))
        return kernel_series.added_files_maintained(tmp_path, patch)

    assert adds("tools/testing/selftests/vfio/vfio_pci_dmabuf_tph_test.c")
    assert adds("drivers/pci/tph_new.c", "tools/testing/selftests/vfio/lib/x.h")
    assert not adds("tools/testing/selftests/vfiox/a.c")
    assert not adds("drivers/pci/tph_new.c", "drivers/misc/new.c")
    assert not adds()
    series_patch = sorted((Path(__file__).parent.parent / "kernel-patches").glob("0007-*"))[0]
    assert kernel_series.added_files(series_patch) == [
        "tools/testing/selftests/vfio/vfio_pci_dmabuf_tph_test.c"]
