"""Hostile uAPI input: one report row per input, with its expected and actual errno.

Every other step of a row must succeed, so a row fails when the input gets
the wrong errno and also when it is refused for the wrong reason. After the
rows, the importer module must unload and load again cleanly; the runner
checks after every scenario that no dma-buf outlived it and dmesg is clean.
"""

from __future__ import annotations

import errno
import shlex
from dataclasses import dataclass, field

from rig.guest.devices import Bench
from rig.guest.topology import Topology
from rig.scenarios.findings import wire
from rig.scenarios.hint_cases import (
    BAD_SETS,
    DEFAULT,
    EXPORTER_NO_COMPLETER,
    EXPORTER_TPH_ONLY,
    SET_EXT_8BIT_COMPLETER,
    SET_NO_COMPLETER,
)
from rig.scenarios.kit import (
    Seen,
    errname,
    expect_ok,
    hint_of,
    hints_summary,
    received_from,
    step_finding,
)
from rig.scenarios.protocol import (
    DMA_LEN,
    KINDS,
    SHELL_RESULT,
    ST,
    ST_EXT,
    Attach,
    Detach,
    Dma,
    Get,
    Insmod,
    Open,
    Rebound,
    Result,
    Rmmod,
    Set,
    Unloaded,
)
from rig.scenarios.sequence import Seq
from rig.scenarios.tphctl_output import Steps

EINVAL, EBADF, EBUSY = errno.EINVAL, errno.EBADF, errno.EBUSY
ENOTCONN, EOPNOTSUPP = errno.ENOTCONN, errno.EOPNOTSUPP


@dataclass(frozen=True)
class Hostile:
    name: str
    label: str                               # the input, as the report shows it
    errno: int                               # what the kernel must answer
    probe: Seq                               # the tphctl step(s) that feed it
    setup: Seq = field(default_factory=Seq)  # steps before it, each of which must succeed
    nth: int = 0                             # which run of the probe's step name is checked
    other: bool = False                      # needs a dma-buf of the spare device
    topo: Topology = DEFAULT
    busy_vcpus: int = 1

    @property
    def summary(self) -> str:
        return f"{self.label}: {errname(self.errno)}"

    @property
    def step_name(self) -> str:
        return self.probe.args[0]

    def seq(self, bench: Bench) -> Seq:
        seq = Seq().open(bench.exporter).get()
        if self.other:
            seq = seq.other(bench.spare_for(self.name, self.topo))
        return seq + self.setup + self.probe

    def tphctl_steps(self, bench: Bench) -> list[str]:
        return list(self.seq(bench).args)

    def command(self, bench: Bench) -> str:
        return self.seq(bench).command()

    def actual(self, steps: Steps) -> int | None:
        target = steps.result(self.step_name, self.nth)
        return target.errno if target else None

    def check(self, seen: Seen) -> list[str]:
        steps = seen.read()
        target = steps.result(self.step_name, self.nth)
        bad: list[str] = [
            step_finding(type(s), f"{s.NAME} failed with {errname(s.errno)} before the "
                         "hostile input", 0, s.errno)
            for s in steps.every(Result) if s is not target and s.ret != 0]
        got = self.actual(steps)
        if got != self.errno:
            kind = KINDS.get(self.step_name, Result)
            bad.append(step_finding(kind if issubclass(kind, Result) else Result,
                                    f"{self.label}: got {errname(got)}, expected "
                                    f"{errname(self.errno)}", self.errno, got))
        # Nothing the hostile input did reached the exporter: one record per
        # DMA that succeeded, from the importer, as it was sent
        sent = [(seen.rid, bool(d.th), d.st, d.ph, bool(d.ext), DMA_LEN)
                for d in steps.every(Dma) if d.ret == 0]
        got_recs = [(r["requester-id"], *hint_of(r), r["length"]) for r in seen.records]
        if got_recs != sent:
            bad.append(wire(f"the exporter received {hints_summary(seen.records)}, expected "
                            f"only the {len(sent)} DMA(s) that succeeded"))
        return bad

    def describe_set(self) -> str:
        return f"{self.label} (expect {errname(self.errno)})"

    def received(self, seen: Seen) -> str:
        return received_from(seen, lambda steps: f"got {errname(self.actual(steps))}")


DMA = Seq().dma(pattern=0x5A5A5A5A)


def cases() -> list[Hostile]:
    """A row per bad SET of hint_cases.BAD_SETS (which bad-input-keeps-state runs in one
    go), per SET a completer refuses, and per misuse of the importer."""
    good = Seq().set(ST | ST_EXT, 0x12, 0x1234, 1)
    attach = Seq().attach()
    # Slot 0's file attached; slot 1 is another file of the importer, which
    # must not reach slot 0's attachment. Slot 0's DMA afterwards must still
    # work (every step but the hostile one must succeed).
    other_file = good.attach().slot(1)
    still_mine = Seq().slot(0) + DMA
    bad_sets = [Hostile(f"hostile-{b.name}", b.label, b.errno, b.seq(), other=b.fd == "other")
                for b in BAD_SETS]
    return [
        *bad_sets,
        Hostile("hostile-probe-no-completer", "PROBE on an exporter without TPH Completer",
                EOPNOTSUPP, Seq().probe(), topo=EXPORTER_NO_COMPLETER),
        Hostile("hostile-set-no-completer", "SET on an exporter without TPH Completer",
                SET_NO_COMPLETER.errno, SET_NO_COMPLETER.seq(), topo=EXPORTER_NO_COMPLETER),
        Hostile("hostile-set-ext-8bit-completer", "SET ST_EXT on an 8-bit-only completer",
                SET_EXT_8BIT_COMPLETER.errno, SET_EXT_8BIT_COMPLETER.seq(),
                topo=EXPORTER_TPH_ONLY),
        Hostile("hostile-attach-eventfd", "importer ATTACH with an eventfd", EINVAL,
                Seq().attach("eventfd")),
        Hostile("hostile-attach-fd-minus-1", "importer ATTACH with fd -1", EBADF,
                Seq().attach("-1")),
        Hostile("hostile-attach-closed-fd", "importer ATTACH with a closed fd", EBADF,
                Seq().attach("closed")),
        Hostile("hostile-attach-twice", "importer ATTACH while attached", EBUSY, attach,
                setup=good.attach(), nth=1),
        Hostile("hostile-dma-before-attach", "importer DMA before ATTACH", ENOTCONN, DMA),
        Hostile("hostile-dma-past-end", "importer DMA at the end of the buffer", EINVAL,
                Seq().dma("end", DMA_LEN, 0x1), setup=attach),
        Hostile("hostile-dma-straddles-end", "importer DMA across the end of the buffer",
                EINVAL, Seq().dma(f"end-{DMA_LEN // 2}", DMA_LEN, 0x1), setup=attach),
        Hostile("hostile-dma-zero-length", "importer DMA of 0 bytes", EINVAL,
                Seq().dma(0, 0, 0x1), setup=attach),
        Hostile("hostile-detach-twice", "importer DETACH twice", ENOTCONN, Seq().detach(),
                setup=attach.detach(), nth=1),
        Hostile("hostile-dma-other-file", "importer DMA from a file that did not attach, "
                "while another file is attached", ENOTCONN, DMA + still_mine,
                setup=other_file),
        Hostile("hostile-detach-other-file", "importer DETACH from a file that did not "
                "attach, while another file is attached", ENOTCONN,
                Seq().detach() + still_mine, setup=other_file),
    ]


UNLOAD_VALUE = (0x5A5A, 1)


@dataclass(frozen=True)
class ModuleReload:
    """After the hostile rows: the importer unloads, loads, binds, and works again."""

    name: str = "importer-module-reload"
    summary: str = "after hostile input the importer module unloads and reloads cleanly"
    topo: Topology = DEFAULT
    busy_vcpus: int = 1

    def command(self, bench: Bench) -> str:
        imp = shlex.quote(bench.importer)
        st, ph = UNLOAD_VALUE
        use = Seq().open(bench.exporter).get().set(ST_EXT, 0, st, ph).attach() + DMA
        return (
            SHELL_RESULT
            + "ko=$(find /lib/modules -name tph_importer.ko | head -n 1); "
            f"rmmod tph_importer >/dev/null 2>&1; r {Rmmod.NAME} $?; "
            f"grep -q '^tph_importer ' /proc/modules; r {Unloaded.NAME} $((!$?)); "
            f'insmod "$ko" >/dev/null 2>&1; r {Insmod.NAME} $?; '
            f"test -e /sys/bus/pci/drivers/tph_importer/{imp}; r {Rebound.NAME} $?; "
            + use.detach().command())

    def check(self, seen: Seen) -> list[str]:
        steps = seen.read()
        bad: list[str] = []
        for kind in (Rmmod, Unloaded, Insmod, Rebound, Open, Get, Set, Attach, Dma, Detach):
            bad += expect_ok(steps, kind)
        st, ph = UNLOAD_VALUE
        got = [hint_of(r) for r in seen.records]
        if got != [(True, st, ph, True)]:
            bad.append(wire(f"after the reload the exporter received {got}, expected "
                            f"[(True, {st:#x}, {ph}, True)]"))
        return bad

    def describe_set(self) -> str:
        st, ph = UNLOAD_VALUE
        return f"rmmod, insmod, then ST_EXT={st:#x} PH={ph}"

    def received(self, seen: Seen) -> str:
        return hints_summary(seen.records)
