"""The tphctl protocol, defined once: its steps, what each prints, how to ask for them.

tphctl (guest-image/tphctl.c, whose header lists the steps) runs one
sequence of steps per invocation and prints one JSON object a line per
step. Here are the step names, one typed record per step kind with the
fields tphctl prints, and the one formatter of a hint as every report
shows it; rig.scenarios.tphctl_output reads the output back into these
records (a missing or malformed field is a ProtocolError naming the step
and the field: the scenario's ERROR, never a traceback), and
rig.scenarios.sequence builds the step sequences.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast, get_type_hints

from rig.errors import RigError

ST = 1 << 0        # VFIO_DMA_BUF_TPH_ST
ST_EXT = 1 << 1    # VFIO_DMA_BUF_TPH_ST_EXT
DMA_LEN = 64
DMA_PATTERN = 0xA5A5A5A5


class ProtocolError(RigError):
    """tphctl printed a line the rig cannot read: a missing or malformed field."""


# Records: one per step kind, its fields named and typed as tphctl prints them.

Answer = tuple[int, int, int]   # race-queries: (TPH query result, ST, PH) of one ATTACH
Counts = tuple[int, ...]        # fuzz: how many of one operation ran, and succeeded
Rows = tuple[tuple[int, ...], ...]   # fuzz: each SET that succeeded (flags, ST, ST_EXT, PH)


@dataclass(frozen=True, kw_only=True)
class Line:
    """One line of tphctl's output."""

    NAME: ClassVar[str] = ""
    # The ADDED fields its line lacked (an older tphctl's): line() leaves them out
    absent: frozenset[str] = dataclasses.field(default=frozenset(), compare=False, repr=False)

    def line(self) -> dict[str, Any]:
        """The JSON object tphctl prints for this record."""
        out: dict[str, Any] = {"step": self.NAME}
        for f in dataclasses.fields(self):
            if f.name == "absent" or f.name in self.absent:
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[f.name] = value
        return out

    def __str__(self) -> str:
        return json.dumps(self.line())


@dataclass(frozen=True, kw_only=True)
class Result(Line):
    """A step's outcome: ret 0, or -errno."""

    ret: int = 0
    errno: int = 0


@dataclass(frozen=True, kw_only=True)
class Step(Result):
    """What tphctl's emit() prints for every step: its outcome and strerror."""

    error: str = ""


R = TypeVar("R", bound=Result)


def _plain(name: str, base: type[R]) -> type[R]:
    """The kind of a step that prints its outcome alone."""
    title = "".join(part.title() for part in name.split("-"))
    return cast("type[R]", type(title, (base,), {"NAME": name, "__module__": __name__,
                                                 "__qualname__": title}))


@dataclass(frozen=True, kw_only=True)
class Open(Step):
    NAME = "open"
    bdf: str = ""
    device_fd: int = 0
    vfio: str = ""           # how: "noiommu", "type1" or "iommufd"


@dataclass(frozen=True, kw_only=True)
class Slot(Step):
    NAME = "slot"
    slot: int = 0


@dataclass(frozen=True, kw_only=True)
class Get(Step):
    NAME = "get"
    region: int = 2
    fd: int = 0
    size: int = 0


@dataclass(frozen=True, kw_only=True)
class Other(Step):
    NAME = "other"
    bdf: str = ""
    fd: int = 0


@dataclass(frozen=True, kw_only=True)
class Set(Step):
    NAME = "set"
    flags: int = 0
    st: int = 0
    st_ext: int = 0
    ph: int = 0


@dataclass(frozen=True, kw_only=True)
class SetRaw(Step):
    NAME = "set-raw"
    fd: str = ""


@dataclass(frozen=True, kw_only=True)
class Attach(Step):
    NAME = "attach"
    tph_ret: int = 0
    st: int = 0
    ph: int = 0
    ext: int = 0
    req_type: int = 0
    size: int = 0


@dataclass(frozen=True, kw_only=True)
class Transfer(Step):
    """What one importer DMA reports, in either direction, or a copy. Dma,
    Read and Copy are siblings, so that finding a Dma never finds a read."""

    offset: int = 0
    len: int = 0
    status: int = 0
    tph_ret: int = 0
    th: int = 0
    st: int = 0
    ph: int = 0
    ext: int = 0
    remapped: int = 0


@dataclass(frozen=True, kw_only=True)
class Dma(Transfer):
    """An importer DMA that writes the dma-buf."""

    NAME = "dma"


@dataclass(frozen=True, kw_only=True)
class Read(Transfer):
    """An importer DMA that reads the dma-buf."""

    NAME = "read"


@dataclass(frozen=True, kw_only=True)
class Copy(Transfer):
    """An importer copy: the device reads `len` bytes of slot `slot`'s dma-buf
    at `src_offset` and writes them into the current slot's at `offset`, every
    request with one hint. remapped: bit 0 the destination's mapping was made
    again, bit 1 the source's."""

    NAME = "copy"
    slot: int = 0
    src_offset: int = 0


@dataclass(frozen=True, kw_only=True)
class DmaStart(Step):
    """A long DMA started in a thread of tphctl; dma-wait reports how it ended."""

    NAME = "dma-start"
    count: int = 0


@dataclass(frozen=True, kw_only=True)
class ReadStart(Step):
    """A long read (count reads in one importer ioctl) started in a thread of
    tphctl; dma-wait reports how it ended."""

    NAME = "read-start"
    count: int = 0


@dataclass(frozen=True, kw_only=True)
class DmaWait(Step):
    """A dma-start's ioctl, joined. Dma's fields with count and done among
    them and ms last: a record's fields are in the order tphctl prints them
    (a record prints as the line it was read from), so no shared base."""

    NAME = "dma-wait"
    offset: int = 0
    len: int = 0
    count: int = 0
    done: int = 0
    status: int = 0
    tph_ret: int = 0
    th: int = 0
    st: int = 0
    ph: int = 0
    ext: int = 0
    remapped: int = 0
    ms: int = 0


@dataclass(frozen=True, kw_only=True)
class Status(Step):
    NAME = "status"
    attached: int = 0
    mapped: int = 0
    invalidations: int = 0
    maps: int = 0
    dmas: int = 0
    tph_ret: int = 0
    req_type: int = 0
    th: int = 0
    st: int = 0
    ph: int = 0
    ext: int = 0
    query_ret: int = 0
    domain: int = 0          # the importer's IOMMU domain (DOMAINS)
    dma_addr: int = 0        # the mapping's first DMA address, 0: not mapped


# The importer's IOMMU domain (TPH_IMPORTER_DOMAIN_*), by Status.domain
DOMAINS = ("none", "identity", "translated", "other")


@dataclass(frozen=True, kw_only=True)
class DmaStale(Step):
    """The importer's fault: a DMA at the last DMA's address after detach."""

    NAME = "dma-stale"
    len: int = 0
    status: int = 0
    done: int = 0


@dataclass(frozen=True, kw_only=True)
class CpuSt(Step):
    """The Steering Tag firmware reports for a CPU (importer CPU_ST)."""

    NAME = "cpu-st"
    cpu: int = 0
    mem_type: int = 0       # 0 volatile, 1 persistent memory
    tph_ret: int = 0        # pcie_tph_get_cpu_st()'s result
    st: int = 0
    req_type: int = 0       # the namespace: 1 8-bit, 3 16-bit


@dataclass(frozen=True, kw_only=True)
class CpuStUse(CpuSt):
    """CPU_ST with USE: the attachment's next mappings DMA with that tag."""

    NAME = "cpu-st-use"


@dataclass(frozen=True, kw_only=True)
class Decode(Step):
    NAME = "decode"
    on: int = 0
    ms: int = 0


@dataclass(frozen=True, kw_only=True)
class Poke(Step):
    NAME = "poke"
    offset: str = ""


@dataclass(frozen=True, kw_only=True)
class Race(Step):
    NAME = "race"
    threads: int = 0
    queries: int = 0
    sets: int = 0
    set_errno: int = 0


@dataclass(frozen=True, kw_only=True)
class RaceQueries(Line):
    """Printed by the race step before its own line: every query's answer."""

    NAME = "race-queries"
    observed: tuple[Answer, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Fuzz(Step):
    """tphctl's fuzz step: per operation [issued, succeeded], and each SET
    that succeeded."""

    NAME = "fuzz"
    seed: int = 0
    threads: int = 0
    get: Counts = ()
    get_other: Counts = ()
    set: Counts = ()
    probe: Counts = ()
    close: Counts = ()
    decode: Counts = ()
    reset: Counts = ()
    attach: Counts = ()
    dma: Counts = ()
    status: Counts = ()
    detach: Counts = ()
    copy: Counts = ()
    reopen: Counts = ()
    set_bad_fd: Counts = ()
    sets: Rows = ()

    OPERATIONS: ClassVar[tuple[str, ...]] = (
        "get", "get_other", "set", "probe", "close", "decode", "reset", "attach", "dma",
        "status", "detach", "copy", "reopen", "set_bad_fd")

    def issued(self, op: str) -> int:
        counts: Counts = getattr(self, op)
        return counts[0] if counts else 0

    def succeeded(self, op: str) -> int:
        counts: Counts = getattr(self, op)
        return counts[1] if len(counts) > 1 else 0


@dataclass(frozen=True, kw_only=True)
class Bar(Result):
    """The rig's shell step: the exporter's BAR2 address (sysfs resource)."""

    NAME = "bar"
    phys: int = 0


@dataclass(frozen=True, kw_only=True)
class Tainted(Result):
    """The rig's shell step: /proc/sys/kernel/tainted."""

    NAME = "tainted"
    mask: int = 0


@dataclass(frozen=True, kw_only=True)
class Groups(Result):
    """The rig's shell step: the IOMMU group numbers of exporter and importer."""

    NAME = "groups"
    exporter: int = 0
    importer: int = 0


@dataclass(frozen=True, kw_only=True)
class DmarFaults(Result):
    """The rig's shell step: how many DMA remapping faults the guest logged."""

    NAME = "dmar-faults"
    count: int = 0


Probe = _plain("probe", Step)
TphGet = _plain("tph-get", Step)
Detach = _plain("detach", Step)
Reset = _plain("reset", Step)
CloseDevice = _plain("close-device", Step)
CloseDmabuf = _plain("close-dmabuf", Step)
Sleep = _plain("sleep", Step)
# The rig's own shell steps (the importer module reload) print their outcome
# in tphctl's format with this shell function: `r NAME STATUS`.
SHELL_RESULT = 'r() { echo "{\\"step\\": \\"$1\\", \\"ret\\": $2, \\"errno\\": 0}"; }; '


def shell_line(kind: type[Result], **numbers: str) -> str:
    """A shell command that prints `kind`'s line, a successful one, in tphctl's
    format; each field's value is a shell expression of a number
    (shell_line(Tainted, mask="$(cat /proc/sys/kernel/tainted)"))."""
    fields = "".join(f', \\"{k}\\": {v}' for k, v in numbers.items())
    return f'echo "{{\\"step\\": \\"{kind.NAME}\\", \\"ret\\": 0, \\"errno\\": 0{fields}}}"'


Rmmod = _plain("rmmod", Result)
Unloaded = _plain("unloaded", Result)
Insmod = _plain("insmod", Result)
Rebound = _plain("rebound", Result)
BindImporter = _plain("bind-importer", Step)

TPHCTL: tuple[type[Line], ...] = (
    Open, Slot, Get, Other, Probe, Set, SetRaw, TphGet, Attach, Dma, Read, Copy, DmaStale,
    DmaStart,
    ReadStart, DmaWait, Detach, Status, CpuSt, CpuStUse, Decode, Reset, Poke, CloseDevice,
    CloseDmabuf, Race, RaceQueries, Fuzz, Sleep)
SHELL: tuple[type[Result], ...] = (Rmmod, Unloaded, Insmod, Rebound, Bar, Tainted, Groups,
                                   DmarFaults, BindImporter)
KINDS: dict[str, type[Line]] = {k.NAME: k for k in (*TPHCTL, *SHELL)}
# The steps tphctl takes on its command line (race-queries is only printed).
STEP_NAMES = tuple(k.NAME for k in TPHCTL if k is not RaceQueries)

# Each kind's fields and their types, in the order tphctl prints them.
FIELDS: dict[type[Line], tuple[tuple[str, Any], ...]] = {
    k: tuple((f.name, get_type_hints(k)[f.name]) for f in dataclasses.fields(k)
             if f.name != "absent")
    for k in KINDS.values()}

# Fields tphctl printed later than the rest: a saved run from an older tphctl
# lacks them, and they read as their defaults there.
ADDED: dict[type[Line], frozenset[str]] = {
    Open: frozenset({"vfio"}), Status: frozenset({"domain", "dma_addr"})}

# The formatter.

def hint_text(th: bool, st: int, ph: int, ext: bool, length: int | None = None) -> str:
    """A hint as every report shows it: "TH=1 PH=2 ST=0x42 8-bit x64B", "no hint x64B"."""
    text = f"TH=1 PH={ph} ST={st:#x} {'ext' if ext else '8-bit'}" if th else "no hint"
    return text if length is None else f"{text} x{length}B"
