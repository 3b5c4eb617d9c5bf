"""The scenario matrix: what userspace sets, and what must reach the wire.

Each case names its topology (cases that share one share a boot), the
SET calls userspace makes on the exporter's dma-buf, what the importer's
TPH query must return, and the one hint the exporter must receive for the
importer's DMA. `check` compares all of it with what tphctl and QMP saw.
"""

from __future__ import annotations

import dataclasses
import errno
from dataclasses import dataclass
from typing import Any

from rig.guest.devices import Bench
from rig.guest.dma_status import ST_DONE, status_text
from rig.guest.topology import Topology
from rig.scenarios.findings import contract, dma, wire
from rig.scenarios.kit import Seen, errname, hints_summary, record_direction
from rig.scenarios.protocol import (
    DMA_LEN,
    DMA_PATTERN,
    ST,
    ST_EXT,
    Attach,
    CpuStUse,
    Dma,
    Get,
    Open,
    Probe,
    Read,
    Set,
    SetRaw,
    TphGet,
    hint_text,
)
from rig.scenarios.sequence import Seq
from rig.scenarios.tphctl_output import Steps

__all__ = ["DMA_LEN", "DMA_PATTERN", "ST", "ST_EXT"]

# The default topology has a second vfio-pci device (a dma-buf of another
# device is hostile input). It and the importer-8bit guest have two vCPUs:
# the concurrency scenarios need them (see rig.scenarios.race), and the
# revocation scenarios change the memory map while the other vCPU may be
# in MMIO, the case qemu-device/'s physmem fix is about.
DEFAULT = Topology(spare=True, cpus=2)
IMPORTER_8BIT = Topology(name="importer-8bit", importer={"ext-tph": "off"}, cpus=2)
RP_NO_COMPLETER = Topology(name="rp-no-completer", root_port_completer="none")
EXPORTER_NO_COMPLETER = Topology(name="exporter-no-completer",
                                 exporter={"tph-completer": "none"})
NOTPH = Topology(name="pci-notph", append=("pci=notph",))
EXPORTER_TPH_ONLY = Topology(name="exporter-tph-completer", exporter={"tph-completer": "tph"})
# Both endpoints Root Complex Integrated Endpoints on pcie.0: TPH is enabled
# without a Root Port to ask (pcie_enable_tph() skips that check for an
# RCiEP), and the p2pdma path goes through the host bridge, which Linux
# accepts on AMD Zen CPUs only.
RCIEP = Topology(name="rciep-epyc", placement="rciep", cpu_model="EPYC")
# The importer supports only Interrupt Vector mode and keeps its ST table in
# the MSI-X table; the test importer enables TPH in the mode its device has
# (tph_importer.st_mode is only a preference). A hint reaching the exporter
# here can only have taken its tag from the completion vector's MSI-X entry:
# Device Specific mode cannot be enabled.
IMPORTER_IV = Topology(name="importer-iv-msix",
                       importer={"ext-tph": "on", "st-location": "msix", "st-modes": "iv"})
# One Downstream Port on the peer-to-peer path without End-End TLP Prefix
# support: the exporter's (dn0) or the importer's (dn1). A 16-bit tag
# travels in the TPH TLP Prefix, an End-End TLP Prefix, which such a port
# treats as a Malformed TLP: over that path only the 8-bit tag arrives.
# PCIe wants all ports of a switch to agree on the support: one port
# stands for one side of the path; the whole switch without it is what
# hardware would have.
DN0_NO_PREFIX = Topology(name="dn0-no-eetlp-prefix", no_prefix_ports=("dn0",))
DN1_NO_PREFIX = Topology(name="dn1-no-eetlp-prefix", no_prefix_ports=("dn1",))
SWITCH_NO_PREFIX = Topology(name="switch-no-eetlp-prefix",
                            no_prefix_ports=("up0", "dn0", "dn1"))


@dataclass(frozen=True)
class TphSet:
    flags: int
    st: int = 0
    st_ext: int = 0
    ph: int = 0
    errno: int = 0          # what the SET must fail with (0: succeed)

    def describe(self) -> str:
        parts = []
        if self.flags & ST:
            parts.append(f"ST={self.st:#04x}")
        if self.flags & ST_EXT:
            parts.append(f"ST_EXT={self.st_ext:#06x}")
        if self.flags & ~(ST | ST_EXT):
            parts.append(f"flags={self.flags:#x}")
        text = " ".join(parts) + f" PH={self.ph}" if parts else "flags=0"
        return text + (f" ({errno.errorcode.get(self.errno, self.errno)})" if self.errno else "")

    def seq(self) -> Seq:
        return Seq().set(self.flags, self.st, self.st_ext, self.ph)


@dataclass(frozen=True)
class BadSet:
    """A SET (or GET) userspace gets wrong, and the errno it must get back.

    Each is a row of the bad-input-keeps-state case and a hostile row of
    its own (rig.scenarios.hostile), named hostile-NAME.
    """

    name: str
    label: str                # the input, as the reports show it
    errno: int
    fd: str = "dmabuf"        # set-raw's fd: dmabuf, other, closed, eventfd, a number;
                              # or "get": a GET on the TPH feature instead of a SET
    flags: int = ST
    st: int = 0x11
    st_ext: int = 0x1111
    ph: int = 0
    argsz_delta: int = 0

    def seq(self) -> Seq:
        if self.fd == "get":
            return Seq().tph_get()
        return Seq().set_raw(self.fd, self.flags, self.st, self.st_ext, self.ph,
                             self.argsz_delta)


@dataclass(frozen=True)
class Hint:
    st: int
    ph: int
    ext: bool

    def describe(self) -> str:
        return hint_text(True, self.st, self.ph, self.ext)


@dataclass(frozen=True)
class Case:
    name: str
    summary: str
    topo: Topology = DEFAULT
    sets: tuple[TphSet, ...] = ()
    probe_errno: int | None = None      # run PROBE first when not None
    attach_ret: int = 0                 # importer's TPH query result (0 or -errno)
    wire: Hint | None = None            # None: the DMA must carry no hint
    bad_sets: tuple[BadSet, ...] = ()   # after the sets: each must fail and change nothing
    # (CPU, memory type, PH): the importer DMAs with that CPU's tag from
    # firmware instead of the exporter's hints (tphctl cpu-st-use)
    use_cpu_st: tuple[int, int, int] | None = None
    busy_vcpus: int = 1
    # The importer's DMA reads the dma-buf (tphctl read) instead of writing
    read: bool = False

    def seq(self, bench: Bench) -> Seq:
        seq = Seq().open(bench.exporter)
        if self.probe_errno is not None:
            seq = seq.probe()
        seq = seq.get()
        if any(b.fd == "other" for b in self.bad_sets):
            seq = seq.other(bench.spare_for(self.name, self.topo))
        for s in self.sets:
            seq += s.seq()
        for b in self.bad_sets:
            seq += b.seq()
        if self.use_cpu_st is not None:
            seq = seq.cpu_st_use(*self.use_cpu_st)
        seq = seq.attach()
        return (seq.read() if self.read else seq.dma()).status().detach()

    def tphctl_steps(self, bench: Bench) -> list[str]:
        return list(self.seq(bench).args)

    def command(self, bench: Bench) -> str:
        return self.seq(bench).command()

    def check(self, seen: Seen) -> list[str]:
        return check(self, seen.steps, seen.records, seen.rid)

    def describe_set(self) -> str:
        text = "; ".join(s.describe() for s in self.sets) if self.sets else "nothing set"
        return text + (f" + {len(self.bad_sets)} bad SETs" if self.bad_sets else "")

    def received(self, seen: Seen) -> str:
        return hints_summary(seen.records)


EOPNOTSUPP = errno.EOPNOTSUPP
EINVAL = errno.EINVAL
EBADF = errno.EBADF


BAD_SETS = (
    BadSet("set-unknown-flag", "SET with flag bit 2", EINVAL, flags=ST | 1 << 2),
    BadSet("set-ph-4", "SET PH 4", EINVAL, ph=4),
    BadSet("set-ph-255", "SET PH 255", EINVAL, ph=255),
    # Undefined flags and ph bits must be zero, also when flags is 0 (which
    # would clear the state: bad-input-keeps-state sees it if accepted).
    BadSet("set-flags-0-ph-4", "SET flags 0 with PH 4", EINVAL, flags=0, ph=4),
    # Not an open fd: EBADF, as other VFIO ioctls that take an fd answer.
    BadSet("set-fd-minus-1", "SET dmabuf_fd -1", EBADF, fd="-1"),
    BadSet("set-closed-fd", "SET with a closed fd", EBADF, fd="closed"),
    BadSet("set-eventfd", "SET with an eventfd", EINVAL, fd="eventfd"),
    BadSet("set-other-device", "SET with a dma-buf of another vfio device", EINVAL,
           fd="other"),
    BadSet("set-argsz-short", "SET with argsz one byte short", EINVAL, argsz_delta=-1),
    BadSet("get-tph", "GET on the TPH feature", EINVAL, fd="get"),
)

# SETs a completer refuses: cases of the matrix, and hostile rows of their own.
SET_NO_COMPLETER = TphSet(ST, st=0x21, ph=1, errno=EOPNOTSUPP)
SET_EXT_8BIT_COMPLETER = TphSet(ST_EXT, st_ext=0x4444, ph=1, errno=EOPNOTSUPP)


def matrix() -> list[Case]:
    cases = [
        Case("no-tph", "no TPH set: the importer gets none and sends no hint",
             attach_ret=-EOPNOTSUPP),
        Case("ext-st", "extended ST reaches the wire with the prefix",
             sets=(TphSet(ST_EXT, st_ext=0xBEEF, ph=1),), wire=Hint(0xBEEF, 1, True)),
        Case("both-ns-ext", "both namespaces set: the extended importer gets the 16-bit tag",
             sets=(TphSet(ST | ST_EXT, st=0x12, st_ext=0x3456, ph=2),),
             wire=Hint(0x3456, 2, True)),
        Case("set-twice", "SET twice: the second value wins (no write-once)",
             sets=(TphSet(ST_EXT, st_ext=0x1111, ph=1), TphSet(ST_EXT, st_ext=0x2222, ph=3)),
             wire=Hint(0x2222, 3, True)),
        Case("flags-0-clears", "flags 0 clears what was set: no hint",
             sets=(TphSet(ST | ST_EXT, st=0x5, st_ext=0x5, ph=1), TphSet(0)),
             attach_ret=-EOPNOTSUPP),
        # TPH Requester Enable 11b permits Extended TPH without requiring
        # it: the importer asks for the 8-bit namespace when the 16-bit one
        # is not set and sends ST[7:0] without the prefix (NO_PREFIX).
        Case("st8-only-ext-importer", "only the 8-bit ST set, extended importer: the "
             "8-bit hint arrives without the prefix",
             sets=(TphSet(ST, st=0x5C, ph=2),), wire=Hint(0x5C, 2, False)),
    ]
    cases += [
        Case(f"st8-ph{ph}", f"8-bit ST with PH {ph}", topo=IMPORTER_8BIT,
             sets=(TphSet(ST, st=0x40 + ph, ph=ph),), wire=Hint(0x40 + ph, ph, False))
        for ph in range(4)
    ]
    cases += [
        Case("both-ns-8bit", "both namespaces set: the 8-bit importer gets the 8-bit tag",
             topo=IMPORTER_8BIT, sets=(TphSet(ST | ST_EXT, st=0x9A, st_ext=0xBCDE, ph=1),),
             wire=Hint(0x9A, 1, False)),
        Case("ext-only-8bit-importer", "only extended set, importer 8-bit: query fails, "
             "no hint", topo=IMPORTER_8BIT, sets=(TphSet(ST_EXT, st_ext=0x1234, ph=2),),
             attach_ret=-EOPNOTSUPP),
        Case("rp-no-completer", "root port without TPH Completer: enable fails, no hint",
             topo=RP_NO_COMPLETER, sets=(TphSet(ST | ST_EXT, st=0x21, st_ext=0x4321, ph=1),),
             attach_ret=-EINVAL),
        Case("exporter-no-completer", "exporter without completer: PROBE and SET fail",
             topo=EXPORTER_NO_COMPLETER, probe_errno=EOPNOTSUPP,
             sets=(SET_NO_COMPLETER,), attach_ret=-EOPNOTSUPP),
        Case("pci-notph", "pci=notph: the importer cannot enable TPH, no hint", topo=NOTPH,
             sets=(TphSet(ST | ST_EXT, st=0x33, st_ext=0x3333, ph=0),), attach_ret=-EINVAL),
        Case("bad-input-keeps-state", "each invalid SET fails with its errno and the value "
             "set before it still reaches the wire",
             sets=(TphSet(ST | ST_EXT, st=0x77, st_ext=0x7777, ph=2),), bad_sets=BAD_SETS,
             wire=Hint(0x7777, 2, True)),
        Case("ext-without-ext-completer", "ST_EXT on an exporter whose completer is 8-bit "
             "only: EOPNOTSUPP; ST alone is accepted and arrives without the prefix",
             topo=EXPORTER_TPH_ONLY,
             sets=(SET_EXT_8BIT_COMPLETER, TphSet(ST, st=0x44, ph=1)),
             wire=Hint(0x44, 1, False)),
        Case("iv-msix-ext", "Interrupt Vector mode, ST table in MSI-X: the 16-bit tag is "
             "written to the completion vector's MSI-X entry and reaches the wire",
             topo=IMPORTER_IV, sets=(TphSet(ST | ST_EXT, st=0x5C, st_ext=0xC5C5, ph=3),),
             wire=Hint(0xC5C5, 3, True)),
        Case("iv-msix-8bit", "Interrupt Vector mode, ST table in MSI-X, only the 8-bit tag "
             "set: it arrives without the prefix", topo=IMPORTER_IV,
             sets=(TphSet(ST, st=0x6D, ph=1),), wire=Hint(0x6D, 1, False)),
        Case("rciep-ext-withheld", "RCiEPs on the host bridge, both tags set: the write "
             "crosses the Root Complex, so the exporter withholds the 16-bit tag and the "
             "8-bit one arrives without the prefix", topo=RCIEP,
             sets=(TphSet(ST | ST_EXT, st=0x2E, st_ext=0xE2E2, ph=2),),
             wire=Hint(0x2E, 2, False)),
        Case("rciep-st8", "RCiEPs on the host bridge, only the 8-bit tag set: it arrives "
             "without the prefix", topo=RCIEP, sets=(TphSet(ST, st=0x3F, ph=0),),
             wire=Hint(0x3F, 0, False)),
        Case("rciep-unset", "RCiEPs on the host bridge, nothing set: no hint", topo=RCIEP,
             attach_ret=-EOPNOTSUPP),
        Case("eetlp-exporter-port-ext", "the exporter's port lacks End-End TLP Prefix "
             "support: ST_EXT is refused (EOPNOTSUPP), as on an 8-bit completer, and "
             "nothing Malformed reaches the exporter", topo=DN0_NO_PREFIX,
             sets=(TphSet(ST | ST_EXT, st=0x5A, st_ext=0xA5A5, ph=1, errno=EOPNOTSUPP),),
             attach_ret=-EOPNOTSUPP),
        Case("eetlp-exporter-port-8bit", "the exporter's port lacks End-End TLP Prefix "
             "support: after ST_EXT is refused, ST alone arrives without the prefix",
             topo=DN0_NO_PREFIX,
             sets=(TphSet(ST | ST_EXT, st=0x5A, st_ext=0xA5A5, ph=1, errno=EOPNOTSUPP),
                   TphSet(ST, st=0x5A, ph=1)), wire=Hint(0x5A, 1, False)),
        Case("eetlp-importer-port", "the importer's port lacks End-End TLP Prefix support: "
             "the importer is enabled for 8-bit tags only and its 8-bit tag arrives, not a "
             "Malformed 16-bit one", topo=DN1_NO_PREFIX,
             sets=(TphSet(ST | ST_EXT, st=0x6B, st_ext=0xB6B6, ph=2),),
             wire=Hint(0x6B, 2, False)),
        Case("eetlp-whole-switch", "no port of the switch supports End-End TLP Prefixes: "
             "ST_EXT is refused, the importer is enabled for 8-bit tags, ST arrives",
             topo=SWITCH_NO_PREFIX,
             sets=(TphSet(ST | ST_EXT, st=0x7C, st_ext=0xC7C7, ph=3, errno=EOPNOTSUPP),
                   TphSet(ST, st=0x7C, ph=3)), wire=Hint(0x7C, 3, False)),
    ]
    # The same hints on reads: 8-bit and Extended, each PH, the 8-bit tag
    # without the prefix on an Extended importer (NO_PREFIX), the fallback to
    # 8-bit tags across a port without End-End TLP Prefix support, none.
    cases += [reading(c) for c in cases if c.name in READ_CASES]
    return cases


def across_root_complex(case: Case) -> Case:
    """`case` where the importer's write crosses the Root Complex
    (PCI_P2PDMA_MAP_THRU_HOST_BRIDGE): whether a Root Complex forwards the
    End-End TLP Prefix between Root Ports is in no register, so the exporter
    withholds the 16-bit tag (get_pci_tph of the attachment) and the
    extended importer asks for the 8-bit one, which arrives without the
    prefix when it is set; with only the 16-bit tag set, no hint."""
    w = case.wire
    if w is None or not w.ext:
        return case
    last = [s for s in case.sets if not s.errno][-1]
    what = f"{last.describe()} across the Root Complex: the 16-bit tag is withheld"
    if last.flags & ST:
        return dataclasses.replace(case, wire=Hint(last.st, last.ph, False),
                                   summary=f"{what}, the 8-bit one arrives without the prefix")
    return dataclasses.replace(case, wire=None, attach_ret=-EOPNOTSUPP,
                               summary=f"{what}, and no hint goes out")


READ_CASES = ("no-tph", "ext-st", "both-ns-8bit", "st8-only-ext-importer",
              *(f"st8-ph{ph}" for ph in range(4)), "eetlp-importer-port", "iv-msix-ext")
# read-NAME, except where `rig run -k NAME` would then pick the read too
READ_NAMES = {"no-tph": "read-unhinted"}


def reading(case: Case) -> Case:
    """`case` with the importer reading the dma-buf instead of writing it."""
    return dataclasses.replace(case, name=READ_NAMES.get(case.name, f"read-{case.name}"),
                               summary=f"{case.summary} (the importer reads)", read=True)


def custom(st: int, ph: int) -> Case:
    """The user's own ST/PH (--st, --ph): both namespaces, extended importer."""
    return Case(f"custom-st{st:#x}-ph{ph}", "user-supplied ST/PH",
                sets=(TphSet(ST | ST_EXT, st=st & 0xFF, st_ext=st & 0xFFFF, ph=ph),),
                wire=Hint(st & 0xFFFF, ph, True))


def expected_records(case: Case, rid: int) -> list[dict[str, Any]]:
    w = case.wire
    return [{"requester-id": rid, "offset": 0, "length": DMA_LEN, "th": w is not None,
             "ph": w.ph if w else 0, "st": w.st if w else 0, "ext": w.ext if w else False,
             "malformed": False, "direction": "read" if case.read else "write"}]


def compared_fields(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each hint record as check compares it: the fields expected_records has,
    its flags as bools."""
    keys = ("requester-id", "offset", "length", "th", "ph", "st", "ext", "malformed")
    flags = ("th", "ext", "malformed")
    # A record of a device from before "malformed" existed was well-formed,
    # and one from before "direction" existed was a write
    return [{**{k: (bool(r.get(k, False)) if k in flags else r[k]) for k in keys},
             "direction": record_direction(r)}
            for r in records]


def check(case: Case, steps: list[dict[str, Any]], records: list[dict[str, Any]],
          rid: int) -> list[str]:
    """Every way what happened differs from what the case expects.

    ProtocolError: a step line lacks a field tphctl prints, or has a malformed one.
    """
    log = Steps(steps)
    bad: list[str] = []
    for kind in (Open, Get):
        st = log.find(kind)
        if st is None or st.ret != 0:
            bad.append(dma(f"{kind.NAME} failed: {st}"))
            return bad
    if case.probe_errno is not None:
        pr = log.find(Probe)
        got = pr.errno if pr else None
        if got != case.probe_errno:
            bad.append(contract(f"PROBE errno {got}, expected {case.probe_errno}",
                                errname(case.probe_errno), errname(got)))
    for i, want in enumerate(case.sets):
        s = log.find(Set, i)
        if s is None or s.errno != want.errno:
            bad.append(contract(f"SET #{i + 1} ({want.describe()}) gave errno "
                                f"{s.errno if s else 'none'}, expected {want.errno}",
                                errname(want.errno), errname(s.errno if s else None)))
    raw = log.every(SetRaw, TphGet)
    for i, b in enumerate(case.bad_sets):
        got = raw[i].errno if i < len(raw) else None
        if got != b.errno:
            bad.append(contract(f"{b.label}: errno {got}, expected {b.errno}",
                                errname(b.errno), errname(got)))
    if case.use_cpu_st is not None:
        use = log.find(CpuStUse)
        if use is None or use.ret != 0 or use.tph_ret != 0:
            bad.append(dma(f"CPU_ST with USE failed: {use}"))
    at = log.find(Attach)
    if at is None or at.ret != 0:
        bad.append(dma(f"ATTACH failed: {at}"))
        return bad
    if at.tph_ret != case.attach_ret:
        bad.append(contract(f"importer TPH query returned {at.tph_ret}, expected "
                            f"{case.attach_ret}", errname(-case.attach_ret),
                            errname(-at.tph_ret)))
    w = case.wire
    if w is not None and at.tph_ret == 0 and (at.st, at.ph, bool(at.ext)) != (
            w.st, w.ph, w.ext):
        bad.append(wire(f"importer got {hint_text(True, at.st, at.ph, bool(at.ext))}, "
                        f"expected {w.describe()}"))
    done = log.find(Read) if case.read else log.find(Dma)
    if done is None or done.ret != 0:
        bad.append(dma(f"{'read ' if case.read else ''}DMA failed: {done}"))
        return bad
    if bool(done.th) != (w is not None):
        bad.append(wire(f"importer says the DMA carried TH={done.th}, expected "
                        f"{int(w is not None)}"))
    if done.status != ST_DONE:
        bad.append(dma(f"the importer's DMA ended with status {status_text(done.status)}, "
                       "expected DONE"))
    want_recs = expected_records(case, rid)
    got_recs = compared_fields(records)
    if got_recs != want_recs:
        bad.append(wire(f"exporter received {got_recs}, expected {want_recs}"))
    return bad
