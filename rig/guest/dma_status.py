"""tph-testdev's DMA_STATUS register: its bits and how reports name them.

The host-side device driver (rig.qdev) reads the register; the test importer
reports it to the scenarios after each DMA.
"""

from __future__ import annotations

ST_BUSY = 0x01
ST_DONE = 0x02
ST_ERROR = 0x04
ST_ERR_ARG = 0x08
ST_ERR_ST = 0x10
ST_ERR_DMA = 0x20

_NAMES = {ST_BUSY: "BUSY", ST_DONE: "DONE", ST_ERROR: "ERROR", ST_ERR_ARG: "ERR_ARG",
          ST_ERR_ST: "ERR_ST", ST_ERR_DMA: "ERR_DMA"}


def status_text(status: int) -> str:
    """DMA_STATUS as its bit names: 0x26 -> "DONE|ERROR|ERR_DMA"."""
    names = [name for bit, name in _NAMES.items() if status & bit]
    rest = status & ~sum(_NAMES)
    return "|".join(names + ([f"{rest:#x}"] if rest else [])) or "0"


__all__ = ["ST_BUSY", "ST_DONE", "ST_ERROR", "ST_ERR_ARG", "ST_ERR_DMA", "ST_ERR_ST",
           "status_text"]
