from __future__ import annotations

from pathlib import Path

import pytest

from rig.builder import series, srctree
from rig.errors import SeriesError

from .conftest import git

COVER = """\
From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: tphlab <tphlab@example.org>
Date: Thu, 1 Jan 2026 00:00:00 +0000
Subject: [PATCH 0/2] vfio/dma-buf: add TPH support for
 peer-to-peer access

This series lets userspace set TPH on a dma-buf.

Changes since v11:
- plain locking

tphlab (2):
  a: one
  b: two

 a.c | 2 +-
"""


def test_cover_description_takes_subject_and_blurb() -> None:
    desc = srctree.cover_description(COVER)
    assert desc is not None
    subject, _, blurb = desc.partition("\n\n")
    assert subject == "vfio/dma-buf: add TPH support for peer-to-peer access"
    assert blurb.startswith("This series lets userspace")
    assert "Changes since v11" in blurb and "tphlab (2)" not in blurb


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "a.c").write_text("int a;\n")
    series.import_tree(tree, "base", tmp_path / "log")
    git(tree, "checkout", "-q", "-b", "tphlab")
    (tree / "a.c").write_text("int a = 1;\n")
    git(tree, "commit", "-qam", "a: one\n\nWhy: because.")
    (tree / "b.c").write_text("int b;\n")
    git(tree, "add", "b.c")
    git(tree, "commit", "-qm", "b: add")
    return tree


def test_export_writes_the_series_and_reexport_is_byte_identical(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    out = tmp_path / "series"
    out.mkdir()
    (out / "0001-stale.patch").write_text("old")
    written = srctree.export("qemu", tree, out)
    assert [p.name for p in written] == ["0001-a-one.patch", "0002-b-add.patch"]
    assert not (out / "0001-stale.patch").exists()
    first = {p.name: p.read_bytes() for p in written}
    assert b"From 0000000000000000000000000000000000000000" in first["0001-a-one.patch"]
    # Applying the exported series and exporting again changes nothing.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "a.c").write_text("int a;\n")
    series.import_tree(fresh, "base", tmp_path / "log2")
    series.apply(fresh, series.series_files(out), tmp_path / "log2")
    again = srctree.export("qemu", fresh, out)
    assert {p.name: p.read_bytes() for p in again} == first


def test_export_refuses_a_tree_without_the_base_tag(tmp_path: Path) -> None:
    tree = tmp_path / "plain"
    tree.mkdir()
    git(tree, "init", "-q")
    (tree / "x").write_text("x")
    git(tree, "add", "x")
    git(tree, "commit", "-qm", "x")
    with pytest.raises(SeriesError, match="not a `rig src` tree"):
        srctree.export("kernel", tree, tmp_path / "out")


def test_the_cover_letter_is_from_the_series_author_not_the_rig(tmp_path: Path) -> None:
    tree = _tree(tmp_path)  # commits by t <t@t.invalid>
    out = tmp_path / "series"
    out.mkdir()
    (out / series.COVER_LETTER).write_text(COVER)
    srctree.export("kernel", tree, out)
    head = (out / series.COVER_LETTER).read_text().splitlines()[:4]
    assert "From: t <t@t.invalid>" in head
    assert not any("rig@tphlab.invalid" in line for line in head)
