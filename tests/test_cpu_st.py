"""CPU Steering Tags: the _DSM values the rig gives QEMU and how it checks the answers."""

from __future__ import annotations

from pathlib import Path

from rig.guest import topology
from rig.guest.devices import Bench
from rig.scenarios import cpu_st, protocol
from rig.scenarios.cpu_st import CpuTags, MemTags
from rig.scenarios.kit import Seen


def test_the_dsm_value_has_the_layout_linux_reads() -> None:
    # The same value and layout as QEMU's qtest (tests/qtest/tph-testdev-test.c)
    tags = CpuTags(MemTags(0x21, 0x2121), MemTags(0x41, None))
    assert tags.dsm_value() == 0x0000410100000000 | 0x21212103
    assert tags.tag(cpu_st.PERSISTENT, ext=True) == 0       # no valid 16-bit tag
    assert tags.tag(cpu_st.PERSISTENT, ext=False) == 0x41
    assert tags.tag(cpu_st.VOLATILE, ext=True) == 0x2121


def test_the_topology_gives_the_host_bridge_every_cpus_tags() -> None:
    p = Path("/x")
    boot = topology.Boot(p / "qemu", p / "bios", p / "share", p / "bzImage", p / "initrd",
                         "tcg", 2222, p / "qmp.sock", p / "console.log")
    argv = topology.qemu_argv(boot, cpu_st.CPU_ST)
    value = argv[argv.index("-global") + 1]
    assert value == "q35-pcihost.x-tph-cpu-st=" + ":".join(
        hex(t.dsm_value()) for t in cpu_st.TAGS)
    assert argv[argv.index("-smp") + 1] == str(len(cpu_st.TAGS))
    # A QEMU without our series has no such property
    assert "-global" not in topology.qemu_argv(boot, cpu_st.CPU_ST, tph_devices=False)


def _answers(tags: dict[tuple[int, int], int], req_type: int = 3) -> list[dict[str, object]]:
    return [protocol.CpuSt(cpu=c, mem_type=m, st=st, req_type=req_type).line()
            for (c, m), st in tags.items()]


GOOD = {(c, m): cpu_st.TAGS[c].tag(m, ext=True) for c in range(2) for m in (0, 1)}


def test_the_query_passes_on_the_tags_given_and_fails_on_any_other() -> None:
    case = cpu_st.CpuStQuery()
    assert case.check(Seen(_answers(GOOD), [], 0)) == []
    assert case.received(Seen(_answers(GOOD), [], 0)) == "tags 0x3131 0x5151 0x3232 0x0"
    wrong = dict(GOOD)
    wrong[(1, 1)] = 0x52           # the 8-bit tag where no 16-bit one is valid
    bad = case.check(Seen(_answers(wrong), [], 0))
    assert bad == ["CPU 1 persistent: tag 0x52 (query 0, req_type 3), expected 0x0 "
                   "(query 0, req_type 3)"]
    assert case.check(Seen(_answers(GOOD, req_type=1), [], 0))
    assert case.check(Seen(_answers(GOOD)[:3], [], 0))


def test_the_dma_case_asks_for_the_cpus_tag_before_attaching() -> None:
    dma = next(c for c in cpu_st.cases() if c.name == "cpu-st-dma")
    steps = dma.command(Bench(exporter="0000:04:00.0", importer="0000:05:00.0")).split()
    assert steps.index("cpu-st-use") < steps.index("attach")


def test_without_the_dsm_every_query_must_fail_with_einval() -> None:
    case = next(c for c in cpu_st.cases() if c.name == "cpu-st-without-dsm")
    assert isinstance(case, cpu_st.CpuStQuery)
    queries = [(c, m) for c in range(case.topo.cpus) for m in (0, 1)]
    einval = [protocol.CpuSt(cpu=c, mem_type=m, tph_ret=-22, req_type=3).line()
              for c, m in queries]
    assert case.check(Seen(einval, [], 0)) == []
    assert case.check(Seen(_answers({q: 0x3131 for q in queries}), [], 0))
