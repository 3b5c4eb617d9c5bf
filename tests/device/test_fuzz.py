"""Fuzz tph-testdev through qtest on an AddressSanitizer/UBSan QEMU: it must never abort.

Random register writes (both BARs, every width), random config-space writes
(the TPH and MSI-X capabilities, the command register), random DMA
descriptors (any OP, address, source, length, ST index, PH, mode) run to completion on
the virtual clock, and hint-log queries over QMP. The seed is fixed and
printed, so a failure replays exactly: pytest -k test_fuzz, same seed.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rig.fuzz import sanitizers
from rig.qdev.switch import MEM, PREF, MiB, QemuBin, SwitchRig, switch_rig
from rig.qdev.tphdev import (
    CMD_COPY,
    CMD_READ,
    DMA_DELAY_NS,
    MSIX_CAP,
    MSIX_TABLE,
    REG_DMA_CMD,
    REG_DMA_LOCAL,
    REG_DMA_SRC_HI,
    REG_DMA_SRC_LO,
    REG_DMA_STATUS,
    TPH_CAP,
    TphDev,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SEED = 0x7E57_F022
OPS = 20000
SANITIZER_MARKS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "SUMMARY: ")


@pytest.fixture(scope="module")
def asan_qemu(monkeypatch_module: pytest.MonkeyPatch) -> QemuBin:
    """`rig build qemu --sanitize` (cached apart from the normal build)."""
    res = subprocess.run([sys.executable, "-m", "rig", "build", "qemu", "--sanitize", "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=5400, check=False)
    if res.returncode != 0:
        pytest.fail(f"rig build qemu --sanitize failed:\n{res.stderr[-4000:]}")
    arts = json.loads(res.stdout)["components"]["qemu"]["artifacts"]
    # An error report ends QEMU at once; leaks at exit are not this test's business.
    for name, value in sanitizers.SANITIZER_ENV.items():
        monkeypatch_module.setenv(name, value)
    return QemuBin(Path(arts["qemu"]), Path(arts["datadir"]))


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _addr(rng: random.Random, r: SwitchRig) -> int:
    """A DMA target: mostly the exporter's BAR2, sometimes anywhere at all."""
    pick = rng.random()
    if pick < 0.6:
        return r.exp.bar2 + rng.randrange(MiB + 64)
    if pick < 0.8:
        base = rng.choice((MEM, PREF, 0, 0xFFFF_FFFF_FFFF_F000))
        return (base + rng.randrange(2 * MiB)) & 0xFFFF_FFFF_FFFF_FFFF
    return rng.getrandbits(64)


def _ops(rng: random.Random, r: SwitchRig,
         totals: list[int]) -> list[Callable[[TphDev], None]]:
    qt = r.vm.qtest

    def bar0_write(d: TphDev) -> None:
        off = rng.choice((rng.randrange(0, 0x50, 4), MSIX_TABLE + rng.randrange(0, 64, 4),
                          rng.randrange(0, 0x2000)))
        width = rng.choice(("b", "w", "l", "q"))
        qt.write(width, d.bar0 + off, rng.getrandbits({"b": 8, "w": 16, "l": 32, "q": 64}[width]))

    def bar_read(d: TphDev) -> None:
        qt.readl(rng.choice((d.bar0, d.bar2)) + rng.randrange(0, MiB, 4))

    def bar2_write(d: TphDev) -> None:
        qt.writel(d.bar2 + rng.randrange(0, MiB, 4), rng.getrandbits(32))

    def config_write(d: TphDev) -> None:
        off = rng.choice((TPH_CAP + rng.randrange(0, 0x80), MSIX_CAP + rng.randrange(0, 12),
                          0x04, rng.randrange(0x40, 0x1000)))
        if off == 0x04:   # command: keep memory decode and bus mastering on mostly
            r.ecam.write16(d.bdf, 0x04, rng.choice((0x6, 0x6, 0x6, 0x2, 0x4, 0x0)))
        elif rng.random() < 0.5:
            r.ecam.write8(d.bdf, off, rng.getrandbits(8))
        else:
            r.ecam.write32(d.bdf, off & ~3, rng.getrandbits(32))

    def dma(d: TphDev) -> None:
        regs = (_addr(rng, r), rng.choice((1, 4, 64, 4096, MiB, MiB + 1, 0, rng.getrandbits(32))),
                rng.getrandbits(32), rng.randrange(0, 80), rng.randrange(0, 8), rng.getrandbits(16))
        for off, val in zip(range(0x10, 0x2C, 4), (regs[0] & 0xFFFF_FFFF, regs[0] >> 32, *regs[1:]),
                            strict=True):
            d.set_reg(off, val)
        # COPY's source, READ's offset in BAR2
        src = _addr(rng, r)
        d.set_reg(REG_DMA_SRC_LO, src & 0xFFFF_FFFF)
        d.set_reg(REG_DMA_SRC_HI, src >> 32)
        d.set_reg(REG_DMA_LOCAL, rng.choice((0, rng.randrange(MiB), rng.getrandbits(32))))
        # WRITE, READ, COPY (with IRQ too), the reserved OP, no START, anything
        d.set_reg(REG_DMA_CMD, rng.choice((1, 1, 3, CMD_READ | 1, CMD_READ | 3, CMD_COPY | 1,
                                           CMD_COPY | 3, 0x31, 0, rng.getrandbits(32))))
        qt.clock_step(rng.choice((1, DMA_DELAY_NS // 2, 10 * DMA_DELAY_NS)))
        d.set_reg(REG_DMA_STATUS, rng.getrandbits(32))

    def query(d: TphDev) -> None:
        totals.append(d.hints(since=rng.choice((0, rng.getrandbits(16))),
                              max=rng.randrange(1, 5000))["total"])
        if rng.random() < 0.1:
            d.clear_hints()

    return [bar0_write, bar_read, bar2_write, config_write, dma, dma, dma, query]


def test_fuzz_never_aborts_qemu(asan_qemu: QemuBin) -> None:
    rng = random.Random(SEED)
    print(f"fuzz seed {SEED:#x}, {OPS} operations")
    totals: list[int] = []
    with switch_rig(asan_qemu) as r:
        ops = _ops(rng, r, totals)
        counts = dict.fromkeys((op.__name__ for op in ops), 0)
        for i in range(OPS):
            op = rng.choice(ops)
            dev = rng.choice((r.exp, r.imp))
            try:
                op(dev)
            except Exception as exc:
                raise AssertionError(f"seed {SEED:#x}, operation {i} ({op.__name__} on "
                                     f"{dev.id}): {exc}\n{r.vm.output()[-4000:]}") from exc
            counts[op.__name__] += 1
        assert r.vm.alive(), r.vm.output()[-4000:]
        assert r.vm.qmp_cmd("query-status")["status"] == "running"
        output = r.vm.output()
        assert not [m for m in SANITIZER_MARKS if m in output], output[-4000:]
    print("operations:", counts, "largest hint log seen:", max(totals))
    assert sum(counts.values()) == OPS
    assert max(totals) > 0, "no DMA ever reached a recorder: the fuzz is not exercising it"
