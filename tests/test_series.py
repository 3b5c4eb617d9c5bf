from __future__ import annotations

import os
from pathlib import Path

import pytest

from rig.builder import series
from rig.errors import SeriesError

from .conftest import git


def make_base(tmp_path: Path) -> Path:
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "a.c").write_text("int a;\n")
    (tree / "b.c").write_text("int b;\n")
    (tree / "c.c").write_text("int c;\n")
    series.import_tree(tree, "base", tmp_path / "log")
    return tree


def make_patch(tmp_path: Path, tree: Path, name: str, edits: dict[str, str], msg: str) -> Path:
    """Commit edits on a throwaway branch and format them as one patch."""
    git(tree, "checkout", "-q", "-B", "scratch", "HEAD")
    for f, text in edits.items():
        (tree / f).write_text(text)
    git(tree, "commit", "-q", "-am", msg)
    out = tmp_path / "patches"
    out.mkdir(exist_ok=True)
    made = git(tree, "format-patch", "--zero-commit", "--no-signature", "-1", "-o", str(out))
    path = Path(made.strip())
    return path.rename(out / name)


def test_series_files_skip_the_cover_letter(tmp_path: Path) -> None:
    for n in ("0002-b.patch", "0000-cover-letter.patch", "0001-a.patch", "notes.txt"):
        (tmp_path / n).write_text("")
    assert [p.name for p in series.series_files(tmp_path)] == ["0001-a.patch", "0002-b.patch"]


def test_apply_commits_the_series_on_the_base(tmp_path: Path) -> None:
    tree = make_base(tmp_path)
    p1 = make_patch(tmp_path, tree, "0001-a.patch", {"a.c": "int a = 1;\n"}, "a: one")
    git(tree, "checkout", "-q", "--detach", series.BASE_TAG)
    p2 = make_patch(tmp_path, tree, "0002-b.patch", {"b.c": "int b = 2;\n"}, "b: two")
    series.apply(tree, [p1, p2], tmp_path / "log")
    log = git(tree, "log", "--format=%s", f"{series.BASE_TAG}..HEAD").split("\n")
    assert log[:2] == ["b: two", "a: one"]
    assert (tree / "a.c").read_text() == "int a = 1;\n"
    assert (tree / "b.c").read_text() == "int b = 2;\n"


def test_reapplying_keeps_mtimes_of_unchanged_files(tmp_path: Path) -> None:
    tree = make_base(tmp_path)
    p1 = make_patch(tmp_path, tree, "0001-a.patch", {"a.c": "int a = 1;\n"}, "a: one")
    git(tree, "checkout", "-q", "--detach", series.BASE_TAG)
    p2 = make_patch(tmp_path, tree, "0002-b.patch", {"b.c": "int b = 2;\n"}, "b: two")
    git(tree, "checkout", "-q", "--detach", series.BASE_TAG)
    p2b = make_patch(tmp_path, tree, "0002-b2.patch", {"b.c": "int b = 3;\n"}, "b: three")
    log = tmp_path / "log"
    series.apply(tree, [p1, p2], log)
    old = 1_000_000_000_000_000_000
    for f in ("a.c", "b.c", "c.c"):
        os.utime(tree / f, ns=(old, old))
    series.apply(tree, [p1, p2b], log)
    assert (tree / "a.c").stat().st_mtime_ns == old      # patch 1 unchanged: not rebuilt
    assert (tree / "c.c").stat().st_mtime_ns == old      # untouched by any patch
    assert (tree / "b.c").stat().st_mtime_ns != old      # patch 2 changed it
    assert (tree / "b.c").read_text() == "int b = 3;\n"


def test_failing_patch_names_the_patch_and_hunk(tmp_path: Path) -> None:
    tree = make_base(tmp_path)
    p1 = make_patch(tmp_path, tree, "0001-a.patch", {"a.c": "int a = 1;\n"}, "a: one")
    git(tree, "checkout", "-q", "--detach", series.BASE_TAG)
    p2 = make_patch(tmp_path, tree, "0002-also-a.patch", {"a.c": "int a = 9;\n"}, "a: nine")
    with pytest.raises(SeriesError) as exc:
        series.apply(tree, [p1, p2], tmp_path / "log")
    msg = exc.value.message
    assert "patch 2/2 0002-also-a.patch does not apply" in msg
    assert "hunk at a.c:1 fails" in msg
    assert "-int a;" in msg
    assert exc.value.fix and "rig src" in exc.value.fix
    # The tree is left clean at the base, ready for the next try.
    assert not (tree / ".git/rebase-apply").exists()
    assert git(tree, "status", "--porcelain") == ""


def test_corrupted_patch_is_named(tmp_path: Path) -> None:
    tree = make_base(tmp_path)
    p1 = make_patch(tmp_path, tree, "0001-a.patch", {"a.c": "int a = 1;\n"}, "a: one")
    text = p1.read_text().replace("@@ -1 +1 @@", "@@ -1,7 +1,9 @@")
    p1.write_text(text)
    with pytest.raises(SeriesError) as exc:
        series.apply(tree, [p1], tmp_path / "log")
    assert "0001-a.patch does not apply" in exc.value.message
    assert "corrupt patch" in exc.value.message


def test_failing_hunk_picks_the_right_file_and_line() -> None:
    text = ("diff --git a/x.c b/x.c\n@@ -3,2 +3,2 @@\n-x\n+y\n"
            "diff --git a/y.c b/y.c\n@@ -3,2 +3,2 @@\n-old y\n+new y\n")
    assert "-old y" in series.failing_hunk(text, "y.c", 3)
    assert "-x" not in series.failing_hunk(text, "y.c", 3)


def test_a_rig_without_its_series_refuses_to_build_unpatched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed copy of the package with no checkout next to it: no silent base build."""
    from rig.builder import qemu_build, sources

    monkeypatch.setenv("TPHLAB_REPO", str(tmp_path))
    src = sources.resolve("qemu")
    with pytest.raises(SeriesError, match="would build unpatched sources"):
        qemu_build.key_inputs(src)
    (tmp_path / "qemu-device").mkdir()
    with pytest.raises(SeriesError) as exc:
        series.series_files(tmp_path / "qemu-device")
    assert exc.value.fix is not None and "TPHLAB_REPO" in exc.value.fix
