"""What a check found, and what kind of check found it.

A scenario's check returns one text per difference. Each is a Finding: the
text, and the kind of thing it read, so that a reviewer (and CI) can tell
a fault from a difference of opinion:

- wire: the hints and records the exporter received (x-query-tph-hints);
- dma: the outcome of a step the transfer needs: the importer's DMAs,
  reads and copies (ret, status, what it says it sent), attach, open, the
  revocations, the shell steps around them;
- health: the guest kernel's: a report in dmesg, a leaked dma-buf, taint;
- selftest: a test case of a kernel selftest program (tools/testing/
  selftests) that failed, with its assertion, or a program that did not
  finish;
- contract: an errno or return value that the reference series' uAPI
  defines (kernel-patches/: VFIO_DEVICE_FEATURE_DMA_BUF_TPH's PROBE and
  SET, and what get_pci_tph answers the importer), with the value the
  reference answers and the one seen.

The kind follows from what a check reads: the helpers that read records
make wire findings, those that read a uAPI step's errno make contract
ones, and so on. Records, DMA status, dmesg and taint are never contract.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    WIRE = "wire"
    DMA = "dma"
    HEALTH = "health"
    CONTRACT = "contract"
    SELFTEST = "selftest"


class Finding(str):
    """One difference: its text (the str itself), its kind, and for a contract
    difference the reference series' value and the one seen."""

    kind: Kind
    reference: str
    seen: str

    def __new__(cls, text: str, kind: Kind, reference: str = "", seen: str = "") -> Finding:
        self = super().__new__(cls, text)
        self.kind, self.reference, self.seen = kind, reference, seen
        return self

    def __reduce__(self) -> tuple[type[Finding], tuple[str, Kind, str, str]]:
        return (Finding, (str(self), self.kind, self.reference, self.seen))


def wire(text: str) -> Finding:
    return Finding(text, Kind.WIRE)


def dma(text: str) -> Finding:
    return Finding(text, Kind.DMA)


def health(text: str) -> Finding:
    return Finding(text, Kind.HEALTH)


def contract(text: str, reference: str, seen: str) -> Finding:
    return Finding(text, Kind.CONTRACT, reference, seen)


def kind_of(text: str) -> Kind:
    """A finding's kind; a text that is not a Finding (a rig message such as
    "a step's output was cut short") is a fault of the run, never contract."""
    return text.kind if isinstance(text, Finding) else Kind.DMA
