"""hint-log-size=N and M DMAs: the newest N records are kept, M - N dropped and counted."""

from __future__ import annotations

import pytest

from rig.qdev.switch import QemuBin, SwitchRig, switch_rig
from rig.qdev.tphdev import ST_DONE, Mode, Req, dma_errors, record

from .hints import ST_TABLE, expected_hint, program_st_table

pytestmark = pytest.mark.integration


def dma_k(r: SwitchRig, k: int) -> dict[str, object]:
    """The k-th DMA of a sequence, each with its own offset, length, PH and ST; its record."""
    offset, length, ph, index = 0x200 * k, 8 + k, k % 4, k % 16
    assert r.imp.dma(r.exp.bar2 + offset, length, index=index, ph=ph) == ST_DONE
    return record(k, r.imp.rid, offset, length,
                  expected_hint(Mode.DS, Req.EXT, ph, ST_TABLE[index]))


@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 5), (4, 4), (4, 5), (7, 23), (16, 16)],
                         ids=lambda v: str(v))
def test_log_keeps_newest(qemu_bin: QemuBin, n: int, m: int) -> None:
    with switch_rig(qemu_bin, exp={"tph-completer": "ext", "hint-log-size": str(n)}) as r:
        program_st_table(r.imp, "cap", ext_tph=True)
        r.imp.set_ctrl(Mode.DS, Req.EXT)
        want = [dma_k(r, k) for k in range(m)]

        kept = want[m - n:]
        r.exp.assert_log(kept, total=m, dropped=m - n)
        assert [rec["seq"] for rec in kept] == list(range(m - n, m))
        # since/max on the kept window: since below it starts at its oldest
        assert r.exp.hints(since=0, max=1) == {"records": kept[:1], "total": m,
                                               "dropped": m - n, "malformed": 0,
                                               "generation": 0,
                                               "dma-errors": dma_errors()}
        assert r.exp.hints(since=m - 1)["records"] == want[-1:]
        assert r.exp.hints(since=m)["records"] == []

        # Clear: empty, counters zero, numbering restarts at 0
        r.exp.clear_hints()
        r.exp.assert_log([], total=0, dropped=0)
        again = dma_k(r, 0)
        r.exp.assert_log([again])
