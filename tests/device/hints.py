"""The hint the spec says a DMA carries, and the ST table the tests program.

docs/specs/tph-testdev.rst, "Hints": Requester Enable 00b -> no hint;
NS -> ST 0; IV and DS -> the ST table entry DMA_ST_INDEX (DS: DMA_ST
without a table); Requester Enable 01b -> ST[7:0] without the TPH TLP
Prefix; 11b -> the 16-bit ST with the prefix in IV and DS modes, unless
the DMA was started with NO_PREFIX (then ST[7:0] without it); 11b in NS
mode -> ST 0 without the prefix.
"""

from __future__ import annotations

from rig.qdev.tphdev import NO_HINT, Hint, Mode, Req, TphDev

# Every entry differs from every other in both bytes, and no byte is 0:
# a wrong entry, a lost upper byte or a 16-bit ST in an 8-bit request shows.
ST_TABLE = [(0xA1 + i) << 8 | (0x31 + 11 * i) for i in range(16)]
MSI_BASE = 0x2000           # guest RAM: where the MSI-X messages land
MSI_DATA = 0xFEED00


def expected_hint(mode: Mode, req: Req, ph: int, st_entry: int,
                  no_prefix: bool = False) -> Hint:
    """What a DMA carries in `mode` with Requester Enable `req`; `st_entry` as
    programmed; `no_prefix`: the DMA was started with DMA_CMD NO_PREFIX."""
    if req is Req.OFF:
        return NO_HINT
    if mode is Mode.NS:
        return Hint(th=True, ph=ph, st=0, ext=False)
    if req is Req.TPH or no_prefix:
        return Hint(th=True, ph=ph, st=st_entry & 0xFF, ext=False)
    return Hint(th=True, ph=ph, st=st_entry, ext=True)


def program_st_table(dev: TphDev, location: str, ext_tph: bool) -> None:
    """Fill the ST table with ST_TABLE, in the capability or in MSI-X Vector Control.

    MSI-X entries point at MSI_BASE + 4 * vector with data MSI_DATA + vector;
    with the table in MSI-X every odd vector is masked (a masked vector keeps its ST).
    """
    for i, st in enumerate(ST_TABLE):
        if location == "cap":
            dev.set_st_entry(i, st)
            # ST Upper is writable only with Extended TPH Requester support
            assert dev.st_entry(i) == (st if ext_tph else st & 0xFF)
            dev.set_msix_entry(i, MSI_BASE + 4 * i, MSI_DATA + i, 0)
        else:
            dev.set_msix_entry(i, MSI_BASE + 4 * i, MSI_DATA + i, st << 16 | (i & 1))
            # ST Upper (bits 31:24) is RsvdP without Extended TPH Requester support
            kept = st if ext_tph else st & 0xFF
            assert dev.msix_vector_ctrl(i) == kept << 16 | (i & 1)
