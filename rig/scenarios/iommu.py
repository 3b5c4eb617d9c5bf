"""VFIO as it is deployed: an IOMMU in the guest, devices in IOMMU groups of
their own, peer-to-peer through the Root Complex, type1 and iommufd.

With an IOMMU Linux enables ACS P2P Request Redirect, so a peer-to-peer
write goes up to the Root Complex, pci_p2pdma_map_type() answers
PCI_P2PDMA_MAP_THRU_HOST_BRIDGE (only on a whitelisted host bridge or an
AMD Zen CPU: these topologies use QEMU's EPYC model), and the importer's
mapping is an IOVA its IOMMU domain translates to the exporter's BAR. The
hint cases, the revocations and the hostile inputs run here again, and a
few scenarios only make sense here: the path itself, the taint, two
devices in one IOMMU group, a DMA to an IOVA that is no longer mapped.
"""

from __future__ import annotations

import dataclasses
import errno
import re
from dataclasses import dataclass
from typing import Any

from rig.guest.devices import Bench
from rig.guest.topology import Topology
from rig.scenarios import dmabuf_copy, hint_cases, revoke, selftests
from rig.scenarios.findings import dma, health, wire
from rig.scenarios.hint_cases import ST, ST_EXT, Case, Hint, TphSet, across_root_complex
from rig.scenarios.kit import Scenario, Seen, expect_errno, expect_ok, hints_summary
from rig.scenarios.protocol import (
    DMA_LEN,
    DOMAINS,
    Attach,
    Bar,
    BindImporter,
    Detach,
    Dma,
    DmarFaults,
    DmaStale,
    Groups,
    Open,
    Set,
    Status,
    Tainted,
    shell_line,
)
from rig.scenarios.sequence import Seq
from rig.scenarios.tphctl_output import Steps

# The exporter below rp0 and the importer below rp1: the write crosses the
# Root Complex whatever ACS says. iommufd, the way new VFIO userspace
# opens a device. Strict IOTLB invalidation: with x86's default lazy
# flushing an unmapped IOVA may still translate for a while, and the
# stale-IOVA scenario wants the IOMMU to refuse it at once.
# The kernel's VFIO selftests run here too (rig.scenarios.selftests): the
# driver test maps 1 GiB, so the guest has 2 GiB, and the DMA mapping test
# maps 2 MiB huge pages, so a few are reserved at boot (its 1 GiB pages
# would take half the guest: those variants skip, saying so), and shared
# anonymous memory comes in 2 MiB pages (the driver test pins 1 GiB of it
# per case, which in 4 KiB pages takes about 9 s under TCG); the spare is
# a TPH (not Extended) completer, for the uAPI selftest's ST_EXT refusal.
# The translating topologies below share these machine-wide settings, so
# one guest holds them all (rig.guest.packing).
TRANSLATED_APPEND = ("iommu.strict=1", "hugepages=4", "transparent_hugepage_shmem=always")
ROOTPORTS = Topology(name="iommu-rootports", placement="rootports", cpu_model="EPYC",
                     iommu=True, vfio="iommufd", spare=True, cpus=2,
                     append=TRANSLATED_APPEND, memory_mb=2048,
                     spare_props={"tph-completer": "tph"})
# Both below one switch whose downstream ports have ACS: separate IOMMU
# groups, and the write is redirected up to the Root Complex. A type1
# container, the way most VFIO userspace still opens a device.
SWITCH_ACS = Topology(name="iommu-switch-acs", switch_acs=True, cpu_model="EPYC", iommu=True,
                      vfio="type1", append=TRANSLATED_APPEND)
# The importer's default domain an identity (passthrough) one: its DMA
# addresses are physical addresses, not translated.
IDENTITY = Topology(name="iommu-identity", placement="rootports", cpu_model="EPYC",
                    iommu=True, vfio="iommufd", append=("iommu.passthrough=1",))
# Exporter and importer in one IOMMU group, so VFIO must refuse the
# exporter while the importer has a kernel driver, and the reverse. Two
# endpoints below one switch whose downstream ports lack ACS are not that
# (7.2 puts them in groups of their own: seen on this bench); two functions
# of one device without ACS are (pci_device_group(): the function alias).
SHARED_GROUP = Topology(name="iommu-shared-group", placement="multifunction", iommu=True,
                        vfio="type1", cpu_model="EPYC", append=TRANSLATED_APPEND)
# A Root Complex that does not forward End-End TLP Prefixes between its
# Root Ports (the PCIe Base Specification leaves it to the implementation;
# the other topologies' does). Nothing tells the kernel which kind it runs
# on, so the series withholds the 16-bit tag from every importer whose
# write crosses the Root Complex (get_pci_tph of an attachment): here a
# 16-bit tag would arrive Malformed, as v11's does.
RC_NO_PREFIX = Topology(name="iommu-rc-no-eetlp-prefix", placement="rootports",
                        cpu_model="EPYC", iommu=True, vfio="iommufd",
                        host_bridge={"x-eetlp-prefix-p2p": "off"})

# What each translating topology's importer must be handed: an IOVA (the
# Root Complex path through a translating domain), or the BAR's own address
# (an identity domain).
EXPECT_IOVA = {ROOTPORTS.name: True, SWITCH_ACS.name: True, RC_NO_PREFIX.name: True,
               IDENTITY.name: False}

# The taint flags a topology may show: O, the out-of-tree test importer.
TAINT_OOT = 1 << 12
TAINT_LETTERS = "PFSRMBUDAWCIOELKXTNJ"   # bit n: its letter in kernel/panic.c


# The shell step that prints /proc/sys/kernel/tainted as a Tainted line
READ_TAINT = shell_line(Tainted, mask="$(cat /proc/sys/kernel/tainted)")


def taint_names(mask: int) -> str:
    """"O (bit 12), W (bit 9)" for a mask of /proc/sys/kernel/tainted."""
    return ", ".join(f"{TAINT_LETTERS[b] if b < len(TAINT_LETTERS) else '?'} (bit {b})"
                     for b in range(64) if mask >> b & 1)


def _renamed(case: Scenario, topo: Topology) -> Scenario:
    """A scenario of the no-IOMMU matrix again on an IOMMU topology."""
    return dataclasses.replace(case, name=f"{topo.name.removeprefix('iommu-')}-{case.name}",
                               topo=topo)  # type: ignore[type-var]


# The hint cases of an extended importer below a TPH Completer, on the
# topology that runs them all (bad-input-keeps-state: every hostile SET of
# hint_cases.BAD_SETS, one after the other, needs the spare device) ...
ALL_HINTS = ("no-tph", "ext-st", "both-ns-ext", "set-twice", "flags-0-clears",
             "st8-only-ext-importer", "bad-input-keeps-state")
# ... and on the others: the 16-bit tag, the 8-bit one, none.
SOME_HINTS = ("no-tph", "ext-st", "st8-only-ext-importer")
# ... and where the Root Complex drops the prefix: both tags set too.
RC_HINTS = (*SOME_HINTS, "both-ns-ext")


def _hint_cases(topo: Topology, picked: tuple[str, ...] = SOME_HINTS) -> list[Scenario]:
    """The hint cases `picked`, where every write crosses the Root Complex."""
    cases = [across_root_complex(c) for c in hint_cases.matrix() if c.name in picked]
    return [_renamed(c, topo) for c in cases if topo.spare or not c.bad_sets]


# The importer reading the dma-buf across the Root Complex: no hint, the
# 16-bit tag (withheld: the 8-bit one or nothing goes out), the 8-bit tag
# of an extended importer; where the Root Complex drops the prefix, both
# tags set as well.
READ_HINTS = ("no-tph", "ext-st", "st8-only-ext-importer")
RC_READ_HINTS = (*READ_HINTS, "both-ns-ext")


def _read_cases(topo: Topology, picked: tuple[str, ...]) -> list[Scenario]:
    """The hint cases `picked` on reads, every read request crossing the
    Root Complex: the same rules as the writes'."""
    cases = [hint_cases.reading(across_root_complex(c)) for c in hint_cases.matrix()
             if c.name in picked and not c.read]
    return [_renamed(c, topo) for c in cases]


def _ph_cases(topo: Topology) -> list[Scenario]:
    """Each PH once, the 8-bit tag without the prefix (NO_PREFIX): with only
    it set, and with both set (the 16-bit one withheld across the Root
    Complex)."""
    return [Case(f"{topo.name.removeprefix('iommu-')}-ph{ph}", f"PH {ph}, "
                 + ("both tags set: the 8-bit one arrives, the 16-bit one is withheld across "
                    "the Root Complex" if ph % 2 else "8-bit ST without the prefix"),
                 topo=topo, sets=(TphSet(ST | ST_EXT, st=0x50 + ph, st_ext=0x5A50 + ph, ph=ph)
                                  if ph % 2 else TphSet(ST, st=0x50 + ph, ph=ph),),
                 wire=Hint(0x50 + ph, ph, False))
            for ph in range(4)]


@dataclass(frozen=True)
class P2pPath:
    """Which way the kernel under test sends the importer's DMA: the VFIO path
    tphctl opened the exporter by, the importer's IOMMU domain, and the DMA
    address its mapping holds beside the exporter's BAR address. An IOVA that
    is not the BAR's address is PCI_P2PDMA_MAP_THRU_HOST_BRIDGE through a
    translating domain: the only way the kernel hands one out."""

    name: str
    topo: Topology
    summary: str = "the importer's mapping is what the path needs, and its DMA arrives"
    busy_vcpus: int = 1

    def command(self, bench: Bench) -> str:
        seq = (Seq().open(bench.exporter).get().set(ST | ST_EXT, st=0x1D, st_ext=0x1D1D, ph=1)
               .attach()
               .dma().status().detach())
        bar = (f"p=$(sed -n 3p /sys/bus/pci/devices/{bench.exporter}/resource | cut -d' ' -f1); "
               + shell_line(Bar, phys="$((p))"))
        return f"{seq.command()}; {bar}"

    def check(self, seen: Seen) -> list[str]:
        steps = seen.read()
        failures = (expect_ok(steps, Open) + expect_ok(steps, Set) + expect_ok(steps, Attach)
                    + expect_ok(steps, Dma))
        op, st, bar = steps.find(Open), steps.find(Status), steps.find(Bar)
        if op is None or st is None or bar is None:
            return [*failures, dma("open, status or the BAR's address is missing")]
        if op.vfio != self.topo.vfio:
            failures.append(dma(f"tphctl opened the exporter through {op.vfio or 'an unnamed path'}"
                                f", not {self.topo.vfio}"))
        want_domain = "identity" if not EXPECT_IOVA[self.topo.name] else "translated"
        if DOMAINS[st.domain] != want_domain:
            failures.append(dma(f"the importer's IOMMU domain is {DOMAINS[st.domain]}, "
                                f"expected {want_domain}"))
        iova = st.dma_addr != bar.phys
        if iova != EXPECT_IOVA[self.topo.name]:
            failures.append(dma(f"the importer's mapping holds {st.dma_addr:#x}, "
                            + (f"an IOVA where the BAR's address {bar.phys:#x} was expected"
                               if iova else "the BAR's own address, where an IOVA through "
                                   "the Root Complex was expected (a bus address handed out "
                                   "where the kernel chose PCI_P2PDMA_MAP_THRU_HOST_BRIDGE?)")))
        # Across the Root Complex the 16-bit tag is withheld: the 8-bit one
        if [(r["th"], r["st"], bool(r["ext"]), r["requester-id"]) for r in seen.records] != [
                (True, 0x1D, False, seen.rid)]:
            failures.append(wire(f"the exporter received {hints_summary(seen.records)}, "
                                      f"expected one write from the importer ({seen.rid:#06x}) "
                                      "with the 8-bit ST 0x1d (the 16-bit one withheld across the "
                                      "Root Complex)"))
        return failures

    def describe_set(self) -> str:
        return "ST=0x1d ST_EXT=0x1d1d PH=1, attach, DMA, STATUS; read BAR2's address"

    def received(self, seen: Seen) -> str:
        return self.path(seen) + "; " + hints_summary(seen.records)

    def path(self, seen: Seen) -> str:
        """"VFIO iommufd; P2P THRU_HOST_BRIDGE (IOVA 0xfffff000, BAR 0x...)"."""
        steps = Steps(seen.steps)
        op, st, bar = steps.find(Open), steps.find(Status), steps.find(Bar)
        if op is None or st is None or bar is None:
            return "path unknown (a step did not run)"
        domain = DOMAINS[st.domain]
        if st.dma_addr != bar.phys:
            p2p = f"THRU_HOST_BRIDGE (IOVA {st.dma_addr:#x}, BAR {bar.phys:#x})"
        elif domain == "identity":
            p2p = (f"BAR address {bar.phys:#x} in an identity domain (THRU_HOST_BRIDGE and "
                   "BUS_ADDR give the same address there)")
        else:
            p2p = f"BUS_ADDR (BAR {bar.phys:#x}, {domain} domain)"
        return f"VFIO {op.vfio}; importer domain {domain}; P2P {p2p}"


@dataclass(frozen=True)
class NoTaint:
    """After the topology's scenarios: only O (the test importer) may taint the
    kernel. No-IOMMU mode taints it, and so does a WARN."""

    name: str
    topo: Topology
    summary: str = "no taint but the test importer's (O): no no-IOMMU mode, no WARN"
    busy_vcpus: int = 1

    def command(self, bench: Bench) -> str:
        return READ_TAINT

    def check(self, seen: Seen) -> list[str]:
        t = seen.read().find(Tainted)
        if t is None:
            return [health("/proc/sys/kernel/tainted was not read")]
        other = t.mask & ~TAINT_OOT
        return [health(f"the kernel is tainted beyond the test importer: {taint_names(other)}")] \
            if other else []

    def describe_set(self) -> str:
        return "read /proc/sys/kernel/tainted"

    def received(self, seen: Seen) -> str:
        t = seen.read().find(Tainted)
        return "not read" if t is None else f"tainted {t.mask:#x}: {taint_names(t.mask) or '-'}"


# How long tphctl may hold the exporter open while the importer's driver
# tries to bind; the bind runs as soon as tphctl has opened it.
HOLD_MS = 10000


@dataclass(frozen=True)
class SharedGroup:
    """Exporter and importer in one IOMMU group: VFIO refuses the exporter while
    the importer has its kernel driver (EPERM: iommu_group_claim_dma_owner()
    for a type1 container, iommu_device_claim_dma_owner() for iommufd, find
    the group's DMA owned by the kernel), and the importer's driver cannot
    bind while userspace holds the exporter (EBUSY:
    iommu_device_use_default_domain() finds the group owned by VFIO). The
    user learns why from the errno; the rig checks the group is indeed one."""

    name: str
    topo: Topology
    summary: str = ("exporter and importer in one IOMMU group: VFIO refuses the exporter "
                    "(EPERM) while the importer has a driver, and the importer cannot bind "
                    "(EBUSY) while VFIO holds the exporter")
    busy_vcpus: int = 1

    def command(self, bench: Bench) -> str:
        imp = f"/sys/bus/pci/devices/{bench.importer}"
        exp = f"/sys/bus/pci/devices/{bench.exporter}"
        groups = (f'ge=$(basename "$(readlink {exp}/iommu_group)"); '
                  f'gi=$(basename "$(readlink {imp}/iommu_group)"); '
                  + shell_line(Groups, exporter="$ge", importer="$gi"))
        # 1. importer bound: open the exporter (tphctl's line says how it failed)
        # 2. importer unbound, the exporter held open by tphctl (once its open
        #    line is out, within HOLD_MS; the file may not exist yet when the
        #    wait starts: grep -s): bind the importer, then let go
        held = Seq().open(bench.exporter).sleep(HOLD_MS).command()
        drv = "/sys/bus/pci/drivers/tph_importer"
        bind = (f"err=$({{ echo {bench.importer} > {drv}/bind; }} 2>&1); rc=$?; "
                "printf '{\"step\": \"bind-importer\", \"ret\": %d, \"errno\": 0, "
                "\"error\": \"%s\"}\\n' \"$rc\" \"${err##*: }\"")
        return (f"{groups}; {Seq().open(bench.exporter).command()}; "
                f"echo {bench.importer} > {imp}/driver/unbind; "
                f"rm -f /tmp/held.out; {held} > /tmp/held.out & h=$!; n=0; "
                "until grep -qs '\"step\": \"open\"' /tmp/held.out || [ $n -ge 400 ]; "
                f"do sleep 0.02; n=$((n + 1)); done; {bind}; kill $h; wait; "
                "head -n 1 /tmp/held.out; "
                f"echo {bench.importer} > {drv}/bind")

    def check(self, seen: Seen) -> list[str]:
        steps = seen.read()
        g = steps.find(Groups)
        failures: list[str] = []
        if g is None:
            failures.append(dma("the IOMMU groups were not read"))
        elif g.exporter != g.importer:
            failures.append(dma(f"exporter and importer are in groups {g.exporter} and "
                                f"{g.importer}: this topology wants them in one"))
        failures += expect_errno(steps, Open, errno.EPERM)
        failures += expect_ok(steps, Open, 1)
        bound = steps.find(BindImporter)
        if bound is None or bound.ret == 0:
            failures.append(dma("the importer's driver bound while VFIO held the exporter of its "
                                "IOMMU group" if bound else "binding the importer did not run"))
        elif not re.search(r"busy", bound.error, re.I):
            failures.append(dma(f"binding the importer failed, but not with EBUSY: "
                                    f"{bound.error!r}"))
        return failures

    def describe_set(self) -> str:
        return "open the exporter (importer bound); unbind the importer, open, bind it"

    def received(self, seen: Seen) -> str:
        steps = seen.read()
        op, bound = steps.find(Open), steps.find(BindImporter)
        return (f"open: {op.error if op and op.ret else 'succeeded'}; bind importer: "
                + ((bound.error or "succeeded") if bound else "not run"))


# How long the stale-IOVA scenario waits for the IOMMU's fault report
FAULT_WAIT_S = 5


@dataclass(frozen=True)
class StaleIova:
    """The importer DMAs after it unmapped (TPH_IMPORTER_DMA_STALE): the IOMMU
    refuses it (iommu.strict=1: no lazy flush), the guest logs a DMAR fault,
    and the exporter records nothing from it."""

    name: str
    topo: Topology
    summary: str = ("a DMA to an unmapped IOVA after detach: the IOMMU refuses it, a DMAR "
                    "fault is logged, nothing reaches the exporter")
    busy_vcpus: int = 1

    def command(self, bench: Bench) -> str:
        seq = (Seq().open(bench.exporter).get().attach().dma().detach().dma_stale())
        # The IOMMU reports the fault by interrupt: wait for it, FAULT_WAIT_S at most
        count = "n=$(dmesg | grep -c 'DMAR: \\[DMA Write')"
        return (f"{seq.command()}; i=0; {count}; "
                f"while [ $n -eq 0 ] && [ $i -lt {FAULT_WAIT_S * 20} ]; do sleep 0.05; "
                f"i=$((i + 1)); {count}; done; " + shell_line(DmarFaults, count="$n"))

    def check(self, seen: Seen) -> list[str]:
        steps = seen.read()
        failures = expect_ok(steps, Dma) + expect_ok(steps, Detach)
        stale = steps.find(DmaStale)
        if stale is None:
            failures.append(dma("the stale DMA did not run"))
        elif stale.errno != errno.EIO:
            failures.append(dma(f"the stale DMA gave errno {stale.errno}, expected EIO (the device "
                                "reports the DMA the IOMMU refused as failed)"))
        faults = steps.find(DmarFaults)
        if faults is None or faults.count < 1:
            failures.append(dma("no DMAR fault in the guest's log: the IOMMU did not report the "
                                "stale DMA"))
        if len(seen.records) != 1 or seen.records[0]["length"] != DMA_LEN:
            failures.append(wire(f"the exporter received {hints_summary(seen.records)}: only the "
                                 f"mapped DMA of {DMA_LEN}B may arrive"))
        return failures

    def describe_set(self) -> str:
        return "attach, DMA, detach, DMA to the old IOVA"

    def received(self, seen: Seen) -> str:
        faults = seen.read().find(DmarFaults)
        return (f"{faults.count if faults else 'no'} DMAR fault(s); "
                + hints_summary(seen.records))


def cases() -> list[Scenario]:
    """The IOMMU topologies' scenarios, each topology's last its taint check."""
    out: list[Scenario] = []
    for topo, hints, extra in (
            (ROOTPORTS, ALL_HINTS, [*_ph_cases(ROOTPORTS), *_read_cases(ROOTPORTS, READ_HINTS),
                                    *[_renamed(c, ROOTPORTS)
                                      for c in revoke.cases(revoke.Tags(ext=False))],
                                    *[_renamed(c, ROOTPORTS)
                                      for c in dmabuf_copy.cases(revoke.Tags(ext=False))],
                                    StaleIova("rootports-stale-iova", ROOTPORTS),
                                    *selftests.cases(ROOTPORTS)]),
            (SWITCH_ACS, SOME_HINTS, _ph_cases(SWITCH_ACS)),
            (IDENTITY, SOME_HINTS, []),
            (RC_NO_PREFIX, RC_HINTS, _read_cases(RC_NO_PREFIX, RC_READ_HINTS))):
        short = topo.name.removeprefix("iommu-")
        out += [P2pPath(f"{short}-p2p-path", topo), *_hint_cases(topo, hints), *extra,
                NoTaint(f"{short}-no-taint", topo)]
    out += [SharedGroup("shared-group-refused", SHARED_GROUP),
            NoTaint("shared-group-no-taint", SHARED_GROUP)]
    return out


def p2p_path(case: Any, seen: Seen) -> str:
    """The path a P2pPath scenario read, "" for any other scenario."""
    return case.path(seen) if isinstance(case, P2pPath) else ""
