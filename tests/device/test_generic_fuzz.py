"""QEMU's generic-fuzz on tph-testdev (rig fuzz device), 30 s in all: every
configuration runs, nothing crashes, the corpus covers the device's
guest-reachable lines, and a reproducer replays on qemu-system-x86_64."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rig.fuzz import device, generic_input, reproducer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# The floor for the lines the guest can reach (QMP and set-up apart)
MIN_GUEST_LINES = 90.0


@pytest.fixture(scope="module")
def fuzz_build() -> dict[str, Path]:
    res = subprocess.run([sys.executable, "-m", "rig", "build", "qemu", "--sanitize", "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=5400, check=False)
    if res.returncode != 0:
        pytest.fail(f"rig build qemu --sanitize failed:\n{res.stderr[-4000:]}")
    arts = json.loads(res.stdout)["components"]["qemu"]["artifacts"]
    return {k: Path(v) for k, v in arts.items()}


def test_generic_fuzz_covers_the_device_without_a_crash(tmp_path: Path,
                                                       fuzz_build: dict[str, Path]) -> None:
    out = tmp_path / "fuzz.json"
    res = subprocess.run([sys.executable, "-m", "rig", "fuzz", "device", "--time", "30",
                          "--corpus", str(tmp_path / "corpus"), "--json", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    print(res.stdout)       # the figures, for CI's log
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads(out.read_text())
    runs = {r["config"]: r for r in doc["runs"]}
    assert set(runs) == set(device.CONFIGS)
    for name, r in runs.items():
        assert r["executions"] > 100 and r["corpus"] > 0 and not r["crashes"], name
    cov = doc["coverage"]
    assert cov["guest_lines"]["percent"] >= MIN_GUEST_LINES, cov
    # QMP's and the set-up's lines are counted, apart
    assert cov["qmp_lines"]["total"] > 0 and cov["setup_lines"]["total"] > 0
    assert cov["tph_helper_lines"]["covered"] > 0


def test_a_reproducer_replays_the_input_on_qemu_system(tmp_path: Path,
                                                       fuzz_build: dict[str, Path]) -> None:
    """The reproducer of a seed (a hinted DMA into the peer's BAR) holds the
    bridge set-up and the input's accesses, and replays without the fuzzer."""
    seed = tmp_path / "seed"
    seed.write_bytes(generic_input.seeds()["ds-ext-write"])
    repro = reproducer.make(fuzz_build["fuzz"], "tph-testdev-switch", seed,
                            tmp_path / "seed.qtest")
    assert repro is not None
    args, commands = reproducer.parse(repro.read_text())
    assert "tph-testdev,bus=dn0,tph-completer=ext" in args
    assert "outl 0xcfc 0xb0000001" in commands          # ECAM mapped
    assert "writel 0xc0200010 0xc0100000" in commands   # DMA_ADDR: the exporter's BAR2
    clean, output = reproducer.replay(repro, fuzz_build["qemu"], fuzz_build["datadir"])
    assert clean, output
    # A QEMU that does not end cleanly is told apart
    bad = tmp_path / "bad.qtest"
    bad.write_text(reproducer.render([*args, "-device", "no-such-device"], commands))
    assert reproducer.check_replays(bad, fuzz_build["qemu"], fuzz_build["datadir"])
