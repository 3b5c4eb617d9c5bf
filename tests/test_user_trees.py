"""Your tree, as you have it: a user's kernel and QEMU tree, and a series from its mails.

Each test runs the rig as a user would, on trees made with `rig src`: the
verdict must be about exactly the code on disk, edits included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from rig import bench
from rig.builder import series
from rig.paths import kernel_series_dir
from rig.progress import Progress
from rig.scenarios import matrix

from .conftest import git

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration

VFIO_FILE = "drivers/vfio/pci/vfio_pci_dmabuf.c"
VFIO_PH = "priv->tph.ph = tph.flags ? tph.ph : 0;"
# The uAPI's answer to a closed fd (EBADF, from dma_buf_get())
VFIO_BADF = "\tif (IS_ERR(dmabuf))\n\t\treturn PTR_ERR(dmabuf);\n\n\tif (dmabuf->ops"
UAPI_SELFTEST = "selftest-vfio_pci_dmabuf_tph_test"
QEMU_FILE = "hw/misc/tph-testdev.c"
QEMU_PH = "r->ph = attrs.tph_ph;"
PH_CASES = [f"st8-ph{p}" for p in range(4)]
# Whole names pick those scenarios only (a bare "st8-ph" picks read-st8-ph* too)
PICK_PH = [a for name in PH_CASES for a in ("-k", name)]


def rig(*args: str, timeout: float = 5400) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "rig", *args], cwd=REPO, capture_output=True,
                         text=True, timeout=timeout, check=False, env=dict(os.environ))
    print(res.stdout[-4000:], res.stderr[-4000:])
    return res


def run_json(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / f"run-{time.monotonic_ns()}.json"
    res = rig("run", "--json", str(out), *args)
    assert out.is_file(), res.stderr[-4000:]
    doc: dict[str, Any] = json.loads(out.read_text())
    return res.returncode, doc


def verdicts(doc: dict[str, Any]) -> dict[str, bool]:
    return {s["name"]: s["passed"] for s in doc["scenarios"]}


def kernel_steps(tree: Path) -> int:
    """Steps of the last kernel build of `tree` (from its cache entry's meta.json)."""
    res = rig("build", "kernel", "--json", "--kernel-tree", str(tree))
    assert res.returncode == 0, res.stderr
    entry = Path(json.loads(res.stdout)["components"]["kernel"]["entry"])
    steps: int = json.loads((entry / "meta.json").read_text())["steps"]
    return steps


def src_tree(factory: pytest.TempPathFactory, component: str) -> Path:
    """A `rig src` tree: the base with our series as commits, as a developer has it."""
    tree = factory.mktemp("user") / component
    res = rig("src", component, str(tree))
    assert res.returncode == 0, res.stderr
    return tree


@pytest.fixture(scope="module")
def ktree() -> Path:
    """The tree the series' author has: our patches on the base, no importer.

    The same tree as `rig bench`'s edit-to-verdict figure (kept in the
    cache, one per version of the series), so both share one kernel build.
    """
    tree = bench.user_kernel_tree(Progress())
    assert git(tree, "status", "--porcelain") == "", f"{tree} is not clean"
    assert int(git(tree, "rev-list", "--count", "tphlab-base..HEAD")) == len(
        series.series_files(kernel_series_dir()))
    return tree


@pytest.fixture(scope="module")
def qtree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return src_tree(tmp_path_factory, "qemu")


def edit(tree: Path, rel: str, old: str, new: str) -> None:
    path = tree / rel
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {rel}"
    path.write_text(text.replace(old, new))


def built_meta(component: str, *args: str) -> dict[str, Any]:
    res = rig("build", component, "--json", *args)
    assert res.returncode == 0, res.stderr[-3000:]
    entry = Path(json.loads(res.stdout)["components"][component]["entry"])
    meta: dict[str, Any] = json.loads((entry / "meta.json").read_text())
    return meta


def first_build_hits(component: str, tree: Path, rel: str) -> dict[str, Any]:
    """Build `tree` once, with an edit no run made before (trees are keyed by
    content: a fixed one would be a cache hit on the next run), and return the
    build's meta.json; the edit is undone after."""
    path = tree / rel
    original = path.read_text()
    path.write_text(original + f"/* a tree of its own: {uuid.uuid4()} */\n")
    try:
        meta = built_meta(component, f"--{component}-tree", str(tree))
        assert git(tree, "status", "--porcelain") == f" M {rel}\n", \
            "the build directory shows in git"
    finally:
        git(tree, "checkout", "--", rel)
    hits, misses = meta["ccache"]["hits"], meta["ccache"]["misses"]
    print(f"{component} tree {tree}: {hits} hits, {misses} misses, {meta['seconds']} s")
    assert meta["build_dir"] == str(tree / ".tphlab-build")
    assert hits + misses > 100, "a new tree's first build compiled almost nothing"
    assert hits >= 0.9 * (hits + misses), f"{misses} misses of {hits + misses}"
    return meta


def test_a_user_tree_of_our_code_compiles_from_the_compiler_cache(
        tmp_path_factory: pytest.TempPathFactory, qtree: Path) -> None:
    """Our scratch tree built first, a new `rig src` tree of the same code at
    another path (and depth) compiles from ccache: each tree builds inside
    itself, so the compiler sees the same relative paths, and the system's
    include directories outside it stay absolute (QEMU's meson passes many)."""
    for component, tree, rel in (("kernel", src_tree(tmp_path_factory, "kernel"), VFIO_FILE),
                                 ("qemu", qtree, QEMU_FILE)):
        built_meta(component)
        first_build_hits(component, tree, rel)


def test_a_user_kernel_tree_runs_the_whole_matrix(ktree: Path, tmp_path: Path) -> None:
    # The kernel's VFIO selftests run on a user tree in the PH-edit test
    rc, doc = run_json(tmp_path, "--kernel-tree", str(ktree), "-K", matrix.SELFTESTS)
    assert rc == 0
    assert doc["sources"]["kernel"]["reference"] is True, "our series, told by patch-id"
    assert list(verdicts(doc)) == [c.name for c in matrix.without_selftests()]
    assert all(verdicts(doc).values())
    src = doc["sources"]["kernel"]
    assert src["kind"] == "tree" and src["path"] == str(ktree)
    assert src["head"] == git(ktree, "rev-parse", "HEAD").strip() and src["dirty"] is False
    assert doc["sources"]["qemu"]["series"] == "ours"


def test_an_uncommitted_edit_is_built_and_fails_the_ph_scenarios(ktree: Path,
                                                                 tmp_path: Path) -> None:
    """Two edits, one build: PH off by one fails the PH scenarios on the wire,
    and EINVAL for a closed fd fails the series' own uAPI selftest by name."""
    edit(ktree, VFIO_FILE, VFIO_PH, "priv->tph.ph = tph.flags ? tph.ph ^ 1 : 0;")
    edit(ktree, VFIO_FILE, VFIO_BADF, VFIO_BADF.replace("PTR_ERR(dmabuf)", "-EINVAL"))
    # A fresh token: the same edits are the same tree, which an earlier run
    # left in the cache, and a cache hit would report that run's build steps
    with (ktree / VFIO_FILE).open("a") as f:
        f.write(f"/* tphlab: PH edit {uuid.uuid4()} */\n")
    try:
        rc, doc = run_json(tmp_path, "--kernel-tree", str(ktree), *PICK_PH,
                           "-k", UAPI_SELFTEST)
        assert rc == 1
        assert verdicts(doc) == dict.fromkeys([*PH_CASES, UAPI_SELFTEST], False)
        # The importer-visible tag is wrong: a fault on the wire, not a
        # difference of contract, although the tree is not the reference
        ph = [s for s in doc["scenarios"] if s["name"] in PH_CASES]
        assert {s["status"] for s in ph} == {"FAIL"}
        assert all("wire" in s["kinds"] for s in ph)
        # The tree fails its own selftest: the case, by name, and nothing else
        uapi = next(s for s in doc["scenarios"] if s["name"] == UAPI_SELFTEST)
        assert uapi["status"] == "FAIL" and set(uapi["kinds"]) == {"selftest"}
        failed = [c["name"] for c in uapi["cases"] if c["status"] == "fail"]
        assert failed == ["vfio_pci_dmabuf_tph_test.bad_fd"], uapi["cases"]
        assert uapi["failures"][0].startswith("vfio_pci_dmabuf_tph_test.bad_fd: ")
        assert ":bad_fd:Expected EBADF (9) == errno (22)" in uapi["failures"][0]
        assert doc["sources"]["kernel"]["reference"] is False
        assert doc["sources"]["kernel"]["dirty"] is True
        steps = kernel_steps(ktree)
        print(f"kernel steps after a one-line edit: {steps}")
        assert 0 < steps < 100, "one changed file must not rebuild the kernel from scratch"
    finally:
        git(ktree, "checkout", "--", VFIO_FILE)
    rc, doc = run_json(tmp_path, "--kernel-tree", str(ktree), *PICK_PH, "-k", UAPI_SELFTEST)
    assert rc == 0 and verdicts(doc) == dict.fromkeys([*PH_CASES, UAPI_SELFTEST], True)
    assert doc["sources"]["kernel"]["dirty"] is False


# get_pci_tph answering on a revoked buffer, as v11 did: the only change
VFIO_REVOKED = ("\t/* As vfio_pci_dma_buf_map(): a revoked buffer has no hints either */\n"
                "\tif (priv->revoked)\n\t\treturn -ENODEV;\n\n\tif (extended) {")
REVOKED_QUERY = ["revoke-decode", "revoke-close-device", "revoke-during-long-dma"]


def test_a_contract_only_difference_differs_with_both_values(ktree: Path,
                                                              tmp_path: Path) -> None:
    """A tree whose only change is get_pci_tph() answering 0 on a revoked
    buffer: no fault on the wire, so the scenarios that ask it DIFFER from the
    reference series (both values named) and the run exits 5, not 1."""
    edit(ktree, VFIO_FILE, VFIO_REVOKED, "\tif (extended) {")
    try:
        rc, doc = run_json(tmp_path, "--kernel-tree", str(ktree), "-k", "revoke-reset",
                           *[a for n in REVOKED_QUERY for a in ("-k", n)])
    finally:
        git(ktree, "checkout", "--", VFIO_FILE)
    assert rc == 5 and doc["exit_code"] == 5
    status = {s["name"]: s["status"] for s in doc["scenarios"]}
    assert status == {**dict.fromkeys(REVOKED_QUERY, "DIFFERS"), "revoke-reset": "PASS"}
    for s in doc["scenarios"]:
        if s["status"] == "DIFFERS":
            assert set(s["kinds"]) == {"contract"}
            assert {(c["reference"], c["seen"]) for c in s["contract"]} == {
                ("ENODEV", "success")}
    assert doc["sources"]["kernel"]["reference"] is False


def test_an_unchanged_user_tree_is_a_fast_cache_hit(ktree: Path) -> None:
    assert rig("build", "all", "--kernel-tree", str(ktree)).returncode == 0
    started = time.monotonic()
    res = rig("build", "all", "--json", "--kernel-tree", str(ktree))
    elapsed = time.monotonic() - started
    assert res.returncode == 0
    assert all(c["cached"] for c in json.loads(res.stdout)["components"].values())
    print(f"no-op `rig build all --kernel-tree`: {elapsed:.2f} s")


def test_a_tree_without_the_vfio_patch_fails_in_seconds(ktree: Path) -> None:
    head = git(ktree, "rev-parse", "HEAD").strip()
    git(ktree, "checkout", "-q", "HEAD~2")    # before 6/7 (and 7/7, its selftest)
    try:
        started = time.monotonic()
        res = rig("run", "--kernel-tree", str(ktree), "-k", "no-tph", timeout=300)
        elapsed = time.monotonic() - started
    finally:
        git(ktree, "checkout", "-q", head)
    assert res.returncode == 2
    assert ("VFIO_DEVICE_FEATURE_DMA_BUF_TPH: not in include/uapi/linux/vfio.h (added by "
            "6/7 \"vfio/pci: Add VFIO_DEVICE_FEATURE_DMA_BUF_TPH\")") in res.stderr
    assert "dma_buf_get_pci_tph" not in res.stderr
    assert elapsed < 30, f"took {elapsed:.1f} s"


def test_a_series_from_its_mails_runs_the_whole_matrix(ktree: Path, tmp_path: Path) -> None:
    mails = tmp_path / "mails"
    git(ktree, "format-patch", "-q", "--cover-letter", "-o", str(mails), "tphlab-base..HEAD")
    assert (mails / "0000-cover-letter.patch").is_file()
    rc, doc = run_json(tmp_path, "--kernel-series", str(mails), "-K", matrix.SELFTESTS)
    assert rc == 0 and all(verdicts(doc).values())
    assert list(verdicts(doc)) == [c.name for c in matrix.without_selftests()]
    src = doc["sources"]["kernel"]
    assert src["series"] == "mails"
    assert len(src["subjects"]) == len(series.series_files(kernel_series_dir()))
    assert src["subjects"][-2].endswith("vfio/pci: Add VFIO_DEVICE_FEATURE_DMA_BUF_TPH")
    assert src["subjects"][-1].endswith("vfio: selftests: Add VFIO_DEVICE_FEATURE_DMA_BUF_TPH "
                                        "test")


def test_an_edit_in_a_user_qemu_tree_is_built_and_tested(qtree: Path, tmp_path: Path) -> None:
    rc, doc = run_json(tmp_path, "--qemu-tree", str(qtree), *PICK_PH)
    assert rc == 0 and verdicts(doc) == dict.fromkeys(PH_CASES, True)
    assert doc["sources"]["qemu"]["kind"] == "tree"
    edit(qtree, QEMU_FILE, QEMU_PH, "r->ph = attrs.tph_ph ^ 1;")
    try:
        rc, doc = run_json(tmp_path, "--qemu-tree", str(qtree), *PICK_PH)
        assert rc == 1 and verdicts(doc) == dict.fromkeys(PH_CASES, False)
        assert doc["sources"]["qemu"]["dirty"] is True
    finally:
        git(qtree, "checkout", "--", QEMU_FILE)
    rc, doc = run_json(tmp_path, "--qemu-tree", str(qtree), *PICK_PH)
    assert rc == 0 and verdicts(doc) == dict.fromkeys(PH_CASES, True)
