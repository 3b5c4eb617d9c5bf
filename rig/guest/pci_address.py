"""A guest PCI address (BDF) and the requester ID it makes, both ways.

A requester ID is bus << 8 | device << 3 | function: the exporter's hint
log names each DMA's requester by it, the guest by its BDF.
"""

from __future__ import annotations

import re

_BDF = re.compile(r"(?:[0-9a-f]{4}:)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])")


def requester_id(bdf: str) -> int:
    """0000:04:00.0 (or 04:00.0) -> 0x0400; ValueError for what is not a PCI address."""
    m = _BDF.fullmatch(bdf.lower())
    if not m:
        raise ValueError(f"not a PCI address: {bdf}")
    return int(m.group(1), 16) << 8 | int(m.group(2), 16) << 3 | int(m.group(3))


def bdf_of(rid: int) -> str:
    """0x0400 -> 04:00.0 (bus:device.function, without the domain)."""
    return f"{rid >> 8:02x}:{(rid >> 3) & 0x1f:02x}.{rid & 7}"
