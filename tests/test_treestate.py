"""A user tree is keyed by its content: every edit changes the key, a build file does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.builder import cache, kernel_build, sources, treestate

from .conftest import git


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    t = tmp_path / "linux"
    (t / "drivers/vfio/pci").mkdir(parents=True)
    (t / "Makefile").write_text("all:\n")
    (t / "drivers/vfio/pci/vfio_pci_dmabuf.c").write_text("int x;\n")
    (t / ".gitignore").write_text("*.o\n/build/\n")
    git(t, "init", "-q")
    git(t, "add", "-A")
    git(t, "commit", "-q", "-m", "base")
    return t


def key(t: Path) -> str:
    return cache.input_key(sources.resolve("kernel", tree=str(t)).identity())


def test_a_clean_git_tree_is_keyed_by_head(tree: Path) -> None:
    st = treestate.read(tree)
    assert st.git and not st.dirty and st.cacheable
    assert st.head == git(tree, "rev-parse", "HEAD").strip()
    assert "clean" in st.describe()


@pytest.mark.parametrize("edit", ["change", "add", "delete", "commit"])
def test_every_kind_of_edit_changes_the_key(tree: Path, edit: str) -> None:
    before = key(tree)
    target = tree / "drivers/vfio/pci/vfio_pci_dmabuf.c"
    if edit == "change":
        target.write_text("int x;\n/* one line */\n")
    elif edit == "add":
        (tree / "drivers/vfio/pci/new.c").write_text("int y;\n")
    elif edit == "delete":
        target.unlink()
    else:
        target.write_text("int x = 1;\n")
        git(tree, "commit", "-q", "-am", "edit")
    after = key(tree)
    assert after != before
    st = treestate.read(tree)
    assert st.dirty == (edit != "commit")


def test_a_second_edit_of_a_dirty_file_changes_the_key_again(tree: Path) -> None:
    target = tree / "drivers/vfio/pci/vfio_pci_dmabuf.c"
    target.write_text("int x = 1;\n")
    one = key(tree)
    target.write_text("int x = 2;\n")
    assert key(tree) != one
    target.write_text("int x;\n")          # reverted: the clean key again
    assert not treestate.read(tree).dirty


def test_build_files_do_not_change_the_key(tree: Path) -> None:
    before = key(tree)
    (tree / "drivers/vfio/pci/vfio_pci_dmabuf.o").write_bytes(b"\x7fELF")
    (tree / "build").mkdir()
    (tree / "build/anything").write_text("x")
    # ... nor does a build directory the rig keeps inside the tree.
    (tree / "rigbuild").mkdir()
    (tree / "rigbuild/.config").write_text("CONFIG_X=y\n")
    st = treestate.read(tree, exclude=[tree / "rigbuild"])
    assert not st.dirty
    assert cache.input_key(st.identity()) == before


def test_the_path_does_not_key_a_git_tree(tree: Path, tmp_path: Path) -> None:
    before = treestate.read(tree).identity()
    moved = tmp_path / "elsewhere"
    tree.rename(moved)
    # The same content at another path is the same build.
    assert treestate.read(moved).identity() == before
    assert "path" not in before


def test_a_tree_that_is_not_git_is_never_taken_from_the_cache(tmp_path: Path) -> None:
    t = tmp_path / "plain"
    t.mkdir()
    (t / "Makefile").write_text("all:\n")
    src = sources.resolve("kernel", tree=str(t))
    assert src.tree is not None and not src.tree.git
    assert not src.cacheable
    assert "not a git work tree" in src.describe()


def test_the_kernel_key_follows_the_tree(tree: Path, cache_home: Path) -> None:
    before = cache.input_key(kernel_build.key_inputs(sources.resolve("kernel", tree=str(tree)),
                                                     "default"))
    (tree / "drivers/vfio/pci/vfio_pci_dmabuf.c").write_text("int x; /* ph ^ 1 */\n")
    after = cache.input_key(kernel_build.key_inputs(sources.resolve("kernel", tree=str(tree)),
                                                    "default"))
    assert before != after


def test_a_cache_hit_reports_the_tree_asked_for(tree: Path, tmp_path: Path) -> None:
    """Two trees with the same content share a build; the report names this one."""
    from rig.builder import artifacts, context

    other = {"kind": "tree", "path": "/elsewhere/linux", "describe": "tree /elsewhere/linux"}
    res = context.Result("kernel", "k", tmp_path, {}, True, 0.0, {"source_detail": other})
    src = sources.resolve("kernel", tree=str(tree))
    built = artifacts.Built({"kernel": res}, artifacts.Request("kernel", None, src))
    assert built.sources()["kernel"]["path"] == str(tree.resolve())
