"""The 2-vCPU memory-decode loop: QEMU must survive hundreds of map changes under MTTCG.

Before the physmem fix at the head of qemu-device/, a vCPU looked the
section index of a TLB entry made from the old memory map up in the new
one, between a map change and its queued TLB flush: QEMU aborted in
iotlb_to_section() (or the guest hung) about once in 90 decode toggles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rig.builder import artifacts
from rig.guest import bringup, devices, kvm
from rig.paths import run_dir
from rig.progress import Progress
from rig.scenarios import hint_cases

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration
ITERATIONS = int(os.environ.get("TPHLAB_DECODE_LOOPS", "300"))
# TPHLAB_DECODE_SANITIZE=1: on the QEMU built with ASan and UBSan.
SANITIZE = ["--sanitize"] if os.environ.get("TPHLAB_DECODE_SANITIZE") == "1" else []
OK_HEAD = [("open", 0), ("get", 0), ("set", 0), ("attach", 0), ("dma", 0), ("decode", 0)]
STEPS = ("get set 2 0 0x1a1 1 attach dma 0 64 0x1 decode off dma 0 64 0x2 decode on "
         "dma 0 64 0x3 detach")


def built() -> artifacts.Artifacts:
    res = subprocess.run([sys.executable, "-m", "rig", "build", "all", "--json", *SANITIZE],
                         cwd=REPO,
                         capture_output=True, text=True, timeout=5400, check=True)
    comps = json.loads(res.stdout)["components"]
    a = {k: Path(v) for c in comps.values() for k, v in c["artifacts"].items()}
    return artifacts.Artifacts(a["qemu"], a["bios"], a["datadir"], a["kernel"], a["initramfs"],
                               a["client_key"], a["host_key"])


def test_two_vcpus_survive_the_decode_loop() -> None:
    arts = built()
    topo = hint_cases.DEFAULT.with_(name="decode-loop", cpus=2)
    vm, _ = bringup.start_vm(arts, topo, run_dir("decode-loop"),
                            kvm.Accel("tcg", "asked for by the test"))
    started = time.monotonic()
    done = 0
    try:
        bench = devices.bind_devices(vm, clear_log=True).only()
        assert vm.shell is not None
        for i in range(ITERATIONS):
            res = vm.shell.run(f"tphctl -k open {bench.exporter} {STEPS}", timeout=60)
            steps = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
            # The DMA while decode is off is refused (ENODEV: the mapping was
            # revoked); every other step succeeds.
            rets = [(s["step"], s["ret"]) for s in steps]
            assert rets == [*OK_HEAD, ("dma", -19), ("decode", 0), ("dma", 0), ("detach", 0)], \
                f"iteration {i}: {res.stdout[-3000:]}{res.stderr[-2000:]}"
            assert vm.alive(), f"QEMU died in iteration {i}: see {vm.console}"
            done += 1
            assert time.monotonic() - started < 1500, f"only {done} iterations in 25 min"
    finally:
        Progress().note(f"decode loop: {done} iterations in {time.monotonic() - started:.1f} s")
        vm.stop()
    assert done == ITERATIONS
