"""Picking patches of a series from its mails, as b4 am -P: lists and ranges."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rig.builder import mailseries, patchpick, sources
from rig.errors import SeriesError, SourceError
from tests.test_mailseries import mail


@pytest.mark.parametrize(("spec", "total", "numbers"), [
    ("1-3", 4, [1, 2, 3]), ("1,3", 4, [1, 3]), ("2-", 4, [2, 3, 4]),
    ("1-2,4,6-", 7, [1, 2, 4, 6, 7]), (" 3 ", 4, [3]), ("2-9", 4, [2, 3, 4]), ("5", 4, []),
])
def test_lists_and_ranges(spec: str, total: int, numbers: list[int]) -> None:
    assert patchpick.parse(spec).numbers(total) == numbers


@pytest.mark.parametrize(("spec", "message"), [
    ("_", r"'_' is not a patch number or range"),
    ("*vfio*", r"is not a patch number"),
    ("1-3,x", r"'x' is not"),
    ("", r"'' is not"),
    ("3-1", "empty range"),
    ("0", "empty range"),
])
def test_what_b4_takes_and_we_do_not_is_named(spec: str, message: str) -> None:
    with pytest.raises(SeriesError, match=message) as exc:
        patchpick.parse(spec)
    assert ("b4" in (exc.value.fix or "")) == ("not a patch number" in message
                                       or message.startswith("'"))


def test_describe_folds_runs() -> None:
    assert patchpick.describe([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
    assert patchpick.describe([4]) == "4"


def _v11(tmp_path: Path, indices: tuple[int, ...] = (0, 1, 2, 3, 4)) -> Path:
    """The shape of a posted version: a cover letter and four patches, the
    last one for hardware the bench does not have."""
    d = tmp_path / "v11"
    d.mkdir(parents=True)
    names = {0: "cover", 1: "PCI/TPH: a", 2: "dma-buf: b", 3: "vfio/pci: c", 4: "net/mlx5: d"}
    for i in indices:
        (d / f"{i:04d}.patch").write_bytes(mail(f"[PATCH v11 {i}/4] {names[i]}"))
    return d


def test_three_patches_of_four_are_applied_and_the_fourth_named(tmp_path: Path) -> None:
    got = mailseries.load(_v11(tmp_path), tmp_path / "scratch", patchpick.parse("1-3"))
    assert got.subjects == ("[PATCH v11 1/4] PCI/TPH: a", "[PATCH v11 2/4] dma-buf: b",
                            "[PATCH v11 3/4] vfio/pci: c")
    assert len(got.patches) == 3
    assert (got.taken, got.total, got.left_out) == ((1, 2, 3), 4,
                                                    ("[PATCH v11 4/4] net/mlx5: d",))
    assert "(patches 1-3 of 4; left out: [PATCH v11 4/4] net/mlx5: d)" in got.describe()
    # The whole series is another cache entry than the three picked
    whole = mailseries.load(_v11(tmp_path / "b"), tmp_path / "scratch")
    assert whole.patches[0].parent != got.patches[0].parent and len(whole.patches) == 4


def test_a_patch_not_asked_for_may_be_missing_one_asked_for_not(tmp_path: Path) -> None:
    d = _v11(tmp_path, (0, 1, 2, 3))
    with pytest.raises(SeriesError, match=r"lacks patch\(es\) 4/4"):
        mailseries.load(d, tmp_path / "scratch")
    got = mailseries.load(d, tmp_path / "scratch", patchpick.parse("1-3"))
    assert len(got.patches) == 3 and got.left_out == ("4/4 (not in the mails)",)
    with pytest.raises(SeriesError, match=r"lacks patch\(es\) 4/4") as exc:
        mailseries.load(d, tmp_path / "scratch", patchpick.parse("2-"))
    assert "leave them out of --patches" in (exc.value.fix or "")
    with pytest.raises(SeriesError, match="picks none of the 4 patches"):
        mailseries.load(d, tmp_path / "scratch", patchpick.parse("5-"))


def test_the_source_reports_what_was_taken_and_left_out(tmp_path: Path,
                                                        cache_home: Path) -> None:
    src = sources.resolve("kernel", series=str(_v11(tmp_path)), patches="1,3")
    detail = src.detail()
    assert detail["patches_taken"] == [1, 3]
    assert detail["patches_left_out"] == ["[PATCH v11 2/4] dma-buf: b",
                                          "[PATCH v11 4/4] net/mlx5: d"]
    assert "patches 1,3 of 4" in str(detail["describe"])
    # All of them: no pick to report
    assert "patches_taken" not in sources.resolve(
        "kernel", series=str(_v11(tmp_path / "b")), patches="1-").detail()
    with pytest.raises(SourceError, match="--kernel-patches 1-3 picks patches of a series"):
        sources.resolve("kernel", patches="1-3")


def test_the_options_are_on_the_command_line() -> None:
    out = subprocess.run([sys.executable, "-m", "rig", "run", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--kernel-patches LIST, --patches LIST" in out and "--qemu-patches LIST" in out
