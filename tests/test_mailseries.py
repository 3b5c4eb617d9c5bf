"""A series from its mails: patch files or an mbox, cover letter skipped, checked whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rig.builder import mailseries, sources
from rig.errors import SeriesError

REPO = Path(__file__).resolve().parent.parent
OURS = sorted((REPO / "kernel-patches").glob("*.patch"))


def mail(subject: str, body: str = "x\n") -> bytes:
    return (f"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
            f"From: a <a@example.org>\nSubject: {subject}\n\n{body}").encode()


def test_a_format_patch_directory_loses_its_cover_letter(tmp_path: Path) -> None:
    d = tmp_path / "mails"
    d.mkdir()
    for p in OURS:
        shutil.copy(p, d / p.name)
    got = mailseries.load(d, tmp_path / "scratch")
    assert got.skipped_cover
    assert len(got.patches) == len(OURS) - 1
    assert [p.read_bytes() for p in got.patches] == [p.read_bytes() for p in OURS[1:]]
    assert got.subjects[0].startswith(f"[PATCH 1/{len(OURS) - 1}] PCI/TPH:")


def test_an_mbox_is_split_and_put_in_order(tmp_path: Path) -> None:
    mbox = tmp_path / "v11.mbx"
    # A list archive gives the mails in arrival order, not in series order.
    mbox.write_bytes(b"".join([mail("[PATCH v11 2/2] second"), mail("[PATCH v11 0/2] cover"),
                               mail("[PATCH v11 1/2] first")]))
    got = mailseries.load(mbox, tmp_path / "scratch")
    assert got.subjects == ("[PATCH v11 1/2] first", "[PATCH v11 2/2] second")
    assert got.patches[0].name.startswith("0001-first")
    # The same mails again: the same files (the cache key sees their content).
    assert mailseries.load(mbox, tmp_path / "scratch").patches == got.patches


def test_a_folded_subject_is_read_whole() -> None:
    m = mailseries.parse(mail("[PATCH v9 3/3] vfio/pci: Add\n VFIO_DEVICE_FEATURE_DMA_BUF_TPH"))
    assert (m.index, m.total, m.version) == (3, 3, 9)
    assert m.subject.endswith("Add VFIO_DEVICE_FEATURE_DMA_BUF_TPH")


@pytest.mark.parametrize(("subjects", "message"), [
    (["[PATCH 1/3] a", "[PATCH 3/3] c"], r"lacks patch\(es\) 2/3"),
    (["[PATCH v10 1/2] a", "[PATCH v11 2/2] b"], "mixes versions"),
    (["[PATCH 1/2] a", "[PATCH 1/2] a again", "[PATCH 2/2] b"], "patch 1/2 twice"),
    (["[PATCH 0/2] cover"], "only a cover letter"),
])
def test_a_broken_series_is_named(tmp_path: Path, subjects: list[str], message: str) -> None:
    d = tmp_path / "mails"
    d.mkdir()
    for i, s in enumerate(subjects):
        (d / f"{i:04d}.patch").write_bytes(mail(s))
    with pytest.raises(SeriesError, match=message):
        mailseries.load(d, tmp_path / "scratch")


def test_an_empty_directory_and_a_missing_path_are_errors(tmp_path: Path) -> None:
    with pytest.raises(SeriesError, match="no patch files"):
        mailseries.load(tmp_path, tmp_path / "scratch")
    with pytest.raises(SeriesError, match="does not exist"):
        mailseries.load(tmp_path / "nope", tmp_path / "scratch")


def test_a_series_replaces_ours_in_the_source(tmp_path: Path, cache_home: Path) -> None:
    mbox = tmp_path / "s.mbx"
    mbox.write_bytes(mail("[PATCH] one patch"))
    src = sources.resolve("kernel", series=str(mbox))
    assert src.mails is not None and len(src.mails.patches) == 1
    assert src.kind != "tree"
    detail = src.detail()
    assert detail["series"] == "mails" and detail["subjects"] == ["[PATCH] one patch"]
    with pytest.raises(Exception, match="both given"):
        sources.resolve("kernel", tree=str(tmp_path), series=str(mbox))
