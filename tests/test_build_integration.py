"""The real builds: `rig build all` cold (or warm), the cache, incremental kernel rebuilds.

These use the user's real cache ($XDG_CACHE_HOME/tphlab), so a warm cache
makes them fast and a cold one makes them pay the full builds once.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from rig.builder import series

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def rig(*args: str, env: dict[str, str] | None = None,
        timeout: float = 5400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rig", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


def build_json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    res = rig("build", "all", "--json", *args, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


@pytest.fixture(scope="module")
def first_build() -> dict[str, Any]:
    return build_json()


def test_build_all_produces_every_artifact(first_build: dict[str, Any]) -> None:
    comps = first_build["components"]
    assert set(comps) == {"qemu", "kernel", "image", "selftests"}
    arts = {k: Path(v) for c in comps.values() for k, v in c["artifacts"].items()}
    for name in ("qemu", "bios", "datadir", "kernel", "config", "headers", "initramfs",
                 "client_key", "host_key", "bin"):
        assert arts[name].exists(), name
    assert "vfio_pci_driver_test" in {p.name for p in arts["bin"].iterdir()}
    assert os.access(arts["qemu"], os.X_OK)
    out = subprocess.run([arts["qemu"], "-device", "help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "pcie-root-port" in out and "x3130-upstream" in out
    meta = json.loads((Path(comps["kernel"]["entry"]) / "meta.json").read_text())
    assert meta["source"] and meta["inputs"]["fragment"]
    config = arts["config"].read_text()
    for opt in ("CONFIG_PCIE_TPH=y", "CONFIG_VFIO_PCI=y", "CONFIG_PCI_P2PDMA=y"):
        assert opt in config


def test_second_build_is_a_cache_hit(first_build: dict[str, Any]) -> None:
    started = time.monotonic()
    second = build_json()
    elapsed = time.monotonic() - started
    for name, comp in second["components"].items():
        assert comp["cached"], f"{name} was rebuilt on an unchanged tree"
        assert comp["key"] == first_build["components"][name]["key"]
    print(f"warm `rig build all`: {elapsed:.2f} s")


def _touch_patch(repo: Path, work_tree: Path) -> Path:
    """A one-line patch to a kernel file no series patch touches."""
    target = "init/calibrate.c"
    base = series.git(work_tree, "show", f"{series.BASE_TAG}:{target}").splitlines(True)
    # A fresh token each run: the changed series must never be a cache hit.
    new = [*base[:1], f"/* tphlab: incremental rebuild check {uuid.uuid4()} */\n", *base[1:]]
    diff = "".join(difflib.unified_diff(base, new, f"a/{target}", f"b/{target}", n=1))
    patch = repo / "kernel-patches" / "9999-incremental-check.patch"
    patch.write_text(
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        "From: tphlab <tphlab@example.org>\nDate: Thu, 1 Jan 2026 00:00:00 +0000\n"
        "Subject: [PATCH] incremental rebuild check\n\n---\n"
        f"diff --git a/{target} b/{target}\n{diff}")
    return patch


def test_touching_one_kernel_patch_rebuilds_only_the_kernel_incrementally(
        first_build: dict[str, Any], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for d in ("qemu-device", "kernel-patches", "guest-image", "importer", "selftest-driver"):
        shutil.copytree(REPO / d, repo / d)
    kernel = first_build["components"]["kernel"]
    work_tree = Path(json.loads((Path(kernel["entry"]) / "meta.json").read_text())["tree"])
    env = {"TPHLAB_REPO": str(repo)}
    # The build directory holds whatever was built there last, which on a
    # shared cache may be another commit's configuration: the first touched
    # build brings it to this series, the second one is the one measured.
    _touch_patch(repo, work_tree)
    primed = build_json(env=env)["components"]["kernel"]
    shutil.rmtree(primed["entry"])
    _touch_patch(repo, work_tree)
    changed = build_json(env=env)["components"]
    assert changed["qemu"]["cached"], "a kernel patch must not rebuild QEMU"
    assert not changed["kernel"]["cached"]
    assert changed["image"]["cached"], "the uAPI headers and modules did not change"
    meta = json.loads((Path(changed["kernel"]["entry"]) / "meta.json").read_text())
    cold = json.loads((Path(kernel["entry"]) / "meta.json").read_text())
    print(f"kernel steps: entry before {cold['steps']}, after a one-patch change {meta['steps']}")
    assert 0 < meta["steps"] < 100, "one touched file must not rebuild the kernel from scratch"
    shutil.rmtree(changed["kernel"]["entry"])
    # Back to the real series: its entries are still in the cache.
    back = build_json()["components"]
    assert all(c["cached"] for c in back.values())
