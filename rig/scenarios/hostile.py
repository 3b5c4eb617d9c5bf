"""Hostile uAPI input: one report row per input, with its expected and actual errno.

Every other step of a row must succeed, so a row fails when the input gets
the wrong errno and also when it is refused for the wrong reason. After the
rows, the importer module must unload and load again cleanly; the runner
checks after every scenario that no dma-buf outlived it and dmesg is clean.
"""

from __future__ import annotations

import errno
import shlex
from dataclasses import dataclass

from rig.guest.topology import Topology
from rig.scenarios.hint_cases import DEFAULT, EXPORTER_NO_COMPLETER, EXPORTER_TPH_ONLY, BadSet
from rig.scenarios.kit import (
    DMA_LEN,
    ST,
    ST_EXT,
    Bench,
    Seen,
    errname,
    expect_ok,
    hint_of,
    hints_summary,
    step,
    tphctl,
)

EINVAL, EBADF, EBUSY = errno.EINVAL, errno.EBADF, errno.EBUSY
ENOTCONN, EOPNOTSUPP = errno.ENOTCONN, errno.EOPNOTSUPP


@dataclass(frozen=True)
class Hostile:
    name: str
    label: str                      # the input, as the report shows it
    errno: int                      # what the kernel must answer
    probe: tuple[str, ...]          # the tphctl step(s) that feed it
    setup: tuple[str, ...] = ()     # steps before it, each of which must succeed
    nth: int = 0                    # which run of the probe's step name is checked
    other: bool = False             # needs a dma-buf of the spare device
    topo: Topology = DEFAULT

    @property
    def summary(self) -> str:
        return f"{self.label}: {errname(self.errno)}"

    @property
    def step_name(self) -> str:
        return self.probe[0]

    def tphctl_steps(self, bench: Bench) -> list[str]:
        steps = ["open", bench.exporter, "get"]
        if self.other:
            if bench.spare is None:
                raise ValueError(f"{self.name}: topology {self.topo.name} has no spare device")
            steps += ["other", bench.spare]
        return [*steps, *self.setup, *self.probe]

    def command(self, bench: Bench) -> str:
        return tphctl(self.tphctl_steps(bench))

    def actual(self, seen: Seen) -> int | None:
        st = step(seen.steps, self.step_name, self.nth)
        return st["errno"] if st else None

    def check(self, seen: Seen) -> list[str]:
        target = step(seen.steps, self.step_name, self.nth)
        bad = [f"{s['step']} failed with {errname(s['errno'])} before the hostile input"
               for s in seen.steps if s is not target and s["ret"] != 0]
        got = self.actual(seen)
        if got != self.errno:
            bad.append(f"{self.label}: got {errname(got)}, expected {errname(self.errno)}")
        return bad

    def describe_set(self) -> str:
        return f"{self.label} (expect {errname(self.errno)})"

    def received(self, seen: Seen) -> str:
        return f"got {errname(self.actual(seen))}"


def _set_raw(b: BadSet) -> tuple[str, ...]:
    return tuple(b.steps())


DMA = ("dma", "0", str(DMA_LEN), "0x5a5a5a5a")


def cases() -> list[Hostile]:
    good = ("set", str(ST | ST_EXT), "0x12", "0x1234", "1")
    return [
        Hostile("hostile-set-unknown-flag", "SET with flag bit 2", EINVAL,
                _set_raw(BadSet("", EINVAL, flags=ST | 1 << 2))),
        Hostile("hostile-set-ph-4", "SET PH 4", EINVAL, _set_raw(BadSet("", EINVAL, ph=4))),
        Hostile("hostile-set-ph-255", "SET PH 255", EINVAL,
                _set_raw(BadSet("", EINVAL, ph=255))),
        Hostile("hostile-set-fd-minus-1", "SET dmabuf_fd -1", EINVAL,
                _set_raw(BadSet("", EINVAL, fd="-1"))),
        Hostile("hostile-set-closed-fd", "SET with a closed fd", EINVAL,
                _set_raw(BadSet("", EINVAL, fd="closed"))),
        Hostile("hostile-set-eventfd", "SET with an eventfd", EINVAL,
                _set_raw(BadSet("", EINVAL, fd="eventfd"))),
        Hostile("hostile-set-other-device", "SET with a dma-buf of another vfio device", EINVAL,
                _set_raw(BadSet("", EINVAL, fd="other")), other=True),
        Hostile("hostile-set-argsz-short", "SET with argsz one byte short", EINVAL,
                _set_raw(BadSet("", EINVAL, argsz_delta=-1))),
        Hostile("hostile-get-tph", "GET on the TPH feature", EINVAL, ("tph-get",)),
        Hostile("hostile-probe-no-completer", "PROBE on an exporter without TPH Completer",
                EOPNOTSUPP, ("probe",), topo=EXPORTER_NO_COMPLETER),
        Hostile("hostile-set-no-completer", "SET on an exporter without TPH Completer",
                EOPNOTSUPP, ("set", str(ST), "0x21", "0", "1"), topo=EXPORTER_NO_COMPLETER),
        Hostile("hostile-set-ext-8bit-completer", "SET ST_EXT on an 8-bit-only completer",
                EOPNOTSUPP, ("set", str(ST_EXT), "0", "0x4444", "1"), topo=EXPORTER_TPH_ONLY),
        Hostile("hostile-attach-eventfd", "importer ATTACH with an eventfd", EINVAL,
                ("attach", "eventfd")),
        Hostile("hostile-attach-fd-minus-1", "importer ATTACH with fd -1", EBADF,
                ("attach", "-1")),
        Hostile("hostile-attach-closed-fd", "importer ATTACH with a closed fd", EBADF,
                ("attach", "closed")),
        Hostile("hostile-attach-twice", "importer ATTACH while attached", EBUSY, ("attach",),
                setup=(*good, "attach"), nth=1),
        Hostile("hostile-dma-before-attach", "importer DMA before ATTACH", ENOTCONN, DMA),
        Hostile("hostile-dma-past-end", "importer DMA at the end of the buffer", EINVAL,
                ("dma", "end", str(DMA_LEN), "0x1"), setup=("attach",)),
        Hostile("hostile-dma-straddles-end", "importer DMA across the end of the buffer",
                EINVAL, ("dma", f"end-{DMA_LEN // 2}", str(DMA_LEN), "0x1"), setup=("attach",)),
        Hostile("hostile-dma-zero-length", "importer DMA of 0 bytes", EINVAL,
                ("dma", "0", "0", "0x1"), setup=("attach",)),
        Hostile("hostile-detach-twice", "importer DETACH twice", ENOTCONN, ("detach",),
                setup=("attach", "detach"), nth=1),
    ]


UNLOAD_VALUE = (0x5A5A, 1)


@dataclass(frozen=True)
class ModuleReload:
    """After the hostile rows: the importer unloads, loads, binds, and works again."""

    name: str = "importer-module-reload"
    summary: str = "after hostile input the importer module unloads and reloads cleanly"
    topo: Topology = DEFAULT

    def command(self, bench: Bench) -> str:
        imp = shlex.quote(bench.importer)
        st, ph = UNLOAD_VALUE
        return (
            'r() { echo "{\\"step\\": \\"$1\\", \\"ret\\": $2, \\"errno\\": 0}"; }; '
            "ko=$(find /lib/modules -name tph_importer.ko | head -n 1); "
            "rmmod tph_importer >/dev/null 2>&1; r rmmod $?; "
            "grep -q '^tph_importer ' /proc/modules; r unloaded $((!$?)); "
            'insmod "$ko" >/dev/null 2>&1; r insmod $?; '
            f"test -e /sys/bus/pci/drivers/tph_importer/{imp}; r rebound $?; "
            + tphctl(["open", bench.exporter, "get", "set", str(ST_EXT), "0", hex(st), str(ph),
                      "attach", *DMA, "pause", "detach"]))

    def check(self, seen: Seen) -> list[str]:
        bad: list[str] = []
        for name in ("rmmod", "unloaded", "insmod", "rebound", "open", "get", "set", "attach",
                     "dma", "detach"):
            bad += expect_ok(seen.steps, name)
        st, ph = UNLOAD_VALUE
        got = [hint_of(r) for r in seen.records]
        if got != [(True, st, ph, True)]:
            bad.append(f"after the reload the exporter received {got}, expected "
                       f"[(True, {st:#x}, {ph}, True)]")
        return bad

    def describe_set(self) -> str:
        st, ph = UNLOAD_VALUE
        return f"rmmod, insmod, then ST_EXT={st:#x} PH={ph}"

    def received(self, seen: Seen) -> str:
        return hints_summary(seen.records)
