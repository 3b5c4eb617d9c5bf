"""The IOMMU topologies: what they put on QEMU's and the kernel's command
line, the rules they must keep, and the checks of their own scenarios
against the ways a broken kernel would answer."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from rig.guest import topology
from rig.guest.devices import Bench
from rig.guest.topology import Topology
from rig.scenarios import hint_cases, iommu, matrix, protocol, revoke, tphctl_output
from rig.scenarios.kit import Seen

BENCH = Bench("0000:01:00.0", "0000:02:00.0", "0000:03:00.0")
RID = 0x0200
BAR = 0x380000000000


def _argv(topo: Topology, accel: str = "tcg") -> list[str]:
    p = Path("/x")
    boot = topology.Boot(p / "qemu", p / "qboot.rom", p / "share", p / "bzImage",
                         p / "initrd", accel, 2222, p / "qmp.sock", p / "console.log")
    return topology.qemu_argv(boot, topo)


def _devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]


def _append(argv: list[str]) -> list[str]:
    return argv[argv.index("-append") + 1].split()


def test_an_iommu_topology_has_the_iommu_first_and_no_noiommu_mode() -> None:
    argv = _argv(iommu.ROOTPORTS)
    devs = _devices(argv)
    assert devs[0] == "intel-iommu,intremap=on,eim=off", "the IOMMU must precede the devices"
    append = _append(argv)
    assert "intel_iommu=on" in append and "iommu.strict=1" in append
    assert not any("noiommu" in w for w in append)
    assert argv[argv.index("-machine") + 1] == "q35"
    # Under KVM interrupt remapping needs the split irqchip
    kvm = _argv(iommu.ROOTPORTS, "kvm")
    assert kvm[kvm.index("-machine") + 1] == "q35,kernel-irqchip=split"


def test_the_topologies_without_an_iommu_keep_noiommu_mode_and_no_iommu() -> None:
    for topo, _ in matrix.topologies():
        argv = _argv(topo)
        has = any(d.startswith("intel-iommu") for d in _devices(argv))
        noiommu = "vfio.enable_unsafe_noiommu_mode=1" in _append(argv)
        assert has == topo.iommu and noiommu == (not topo.iommu), topo.name
        assert (topo.vfio == "noiommu") == (not topo.iommu), topo.name


def test_rootports_put_each_endpoint_below_a_root_port_of_its_own() -> None:
    devs = _devices(_argv(iommu.ROOTPORTS))
    ports = [d for d in devs if d.startswith("pcie-root-port")]
    assert [p.split(",")[1] for p in ports] == ["id=rp0", "id=rp1", "id=rp2"]
    assert all("x-tph-completer=ext" in p for p in ports)
    assert len({p.split("addr=")[1] for p in ports}) == 3
    assert len({p.split("chassis=")[1].split(",")[0] for p in ports}) == 3
    assert any(d.startswith("tph-testdev,id=tphexp,bus=rp0") for d in devs)
    assert any(d.startswith("tph-testdev,id=tphimp,bus=rp1") for d in devs)
    assert any(d.startswith("tph-testdev,id=tphspare,bus=rp2") for d in devs)
    assert not any(d.startswith(("x3130", "xio3130")) for d in devs)
    argv = _argv(iommu.ROOTPORTS)
    assert argv[argv.index("-cpu") + 1] == "EPYC"


def test_acs_goes_on_the_switch_downstream_ports_only_when_asked() -> None:
    devs = _devices(_argv(iommu.SWITCH_ACS))
    down = [d for d in devs if d.startswith("xio3130-downstream")]
    assert down and all(d.endswith(",disable-acs=off") for d in down)
    shared = _devices(_argv(iommu.SHARED_GROUP))
    assert not any("disable-acs" in d for d in shared)
    # One group: functions 0 and 1 of one device, which no ACS separates
    assert any(d.startswith("tph-testdev,id=tphexp,bus=rp0,addr=0x0.0,multifunction=on")
               for d in shared)
    assert any(d.startswith("tph-testdev,id=tphimp,bus=rp0,addr=0x0.1") for d in shared)
    with pytest.raises(ValueError, match="multifunction placement has no spare"):
        topology.device_args(iommu.SHARED_GROUP.with_(spare=True), True)
    # Without our QEMU's devices (the NIC-only boot) the property is not used
    assert not any("disable-acs" in d for d in topology.device_args(iommu.SWITCH_ACS, False))


def test_the_root_complex_prefix_forwarding_is_a_host_bridge_global() -> None:
    argv = _argv(iommu.RC_NO_PREFIX)
    assert "q35-pcihost.x-eetlp-prefix-p2p=off" in argv


@pytest.mark.parametrize("bad, why", [
    (Topology(name="t", iommu=True), "VFIO noiommu with an IOMMU"),
    (Topology(name="t", vfio="iommufd"), "VFIO iommufd without an IOMMU"),
    (Topology(name="t", placement="rciep", switch_acs=True), "switch_acs needs"),
])
def test_settings_that_cannot_be_are_refused_by_name(bad: Topology, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        topology.device_args(bad, True)


def test_ports_of_the_rootports_placement_may_lack_prefix_support() -> None:
    topo = iommu.ROOTPORTS.with_(no_prefix_ports=("rp1",))
    rp1 = next(d for d in _devices(_argv(topo)) if "id=rp1" in d)
    assert rp1.endswith(",x-eetlp-prefix=off")
    with pytest.raises(ValueError, match="no rootports port dn0; the ports are rp0, rp1, rp2"):
        topology.device_args(iommu.ROOTPORTS.with_(no_prefix_ports=("dn0",)), True)


def test_the_bind_command_tells_tphctl_the_vfio_path() -> None:
    from rig.guest import devices
    cmd = devices.bind_command(devices.Benches({"iommu-rootports": BENCH}), "iommufd")
    assert cmd.endswith(f"echo iommufd > {topology.VFIO_PATH_FILE}")


def test_each_iommu_topology_ends_with_its_taint_check_and_names_are_unique() -> None:
    names = [c.name for c in matrix.full()]
    assert len(names) == len(set(names))
    for topo, members in matrix.topologies():
        if topo.iommu:
            assert members[-1].endswith("-no-taint"), topo.name
    # -k with a whole name picks that scenario only
    from rig.cli.run import select
    assert [c.name for c in select(matrix.full(), ["no-tph"])] == ["no-tph"]
    assert len(select(matrix.full(), ["rootports-"])) > 10


# The scenarios' checks, on what a passing run shows and on what broken ones would.

def _line(kind: type[protocol.Line], **fields: Any) -> dict[str, Any]:
    return kind(**fields).line()


def _path_seen(vfio: str = "iommufd", domain: int = 2, dma_addr: int = 0xFFFFF000,
               records: list[dict[str, Any]] | None = None) -> Seen:
    steps = [_line(protocol.Open, bdf=BENCH.exporter, device_fd=5, vfio=vfio),
             _line(protocol.Get, fd=6, size=4096),
             _line(protocol.Set, flags=3, st=0x1D, st_ext=0x1D1D, ph=1),
             _line(protocol.Attach, size=4096),
             _line(protocol.Dma, len=64, th=1, st=0x1D, ph=1, ext=0),
             _line(protocol.Status, attached=1, mapped=1, maps=1, dmas=1, th=1, st=0x1D,
                   ph=1, ext=0, domain=domain, dma_addr=dma_addr),
             _line(protocol.Detach),
             _line(protocol.Bar, phys=BAR)]
    recs = records if records is not None else [
        {"requester-id": RID, "offset": 0, "length": 64, "th": True, "ph": 1, "st": 0x1D,
         "ext": False, "malformed": False}]
    return Seen(steps, recs, RID)


def test_the_p2p_path_fails_on_a_16_bit_tag_across_the_root_complex() -> None:
    """v11's exporter hands the 16-bit tag to an importer below another Root
    Port: where the Root Complex forwards the prefix it arrives, and the bench
    names the difference; where it does not, the write arrives Malformed."""
    case = iommu.P2pPath("rootports-p2p-path", iommu.ROOTPORTS)
    wide = {"requester-id": RID, "offset": 0, "length": 64, "th": True, "ph": 1,
            "st": 0x1D1D, "ext": True, "malformed": False}
    for rec in (wide, {**wide, "malformed": True}):
        bad = case.check(_path_seen(records=[rec]))
        assert any("with the 8-bit ST 0x1d (the 16-bit one withheld across the Root "
                   "Complex)" in b for b in bad), bad


def test_the_p2p_path_passes_on_an_iova_and_names_it() -> None:
    case = iommu.P2pPath("rootports-p2p-path", iommu.ROOTPORTS)
    seen = _path_seen()
    assert case.check(seen) == []
    assert case.path(seen) == ("VFIO iommufd; importer domain translated; P2P THRU_HOST_BRIDGE "
                               f"(IOVA 0xfffff000, BAR {BAR:#x})")
    assert iommu.p2p_path(case, seen) == case.path(seen)
    assert iommu.p2p_path(iommu.NoTaint("x", iommu.ROOTPORTS), seen) == ""


def test_the_p2p_path_fails_on_a_bus_address_where_an_iova_was_due() -> None:
    """The deliberate break: the exporter's map hands out the BAR's bus address
    where the kernel chose the host bridge path."""
    case = iommu.P2pPath("rootports-p2p-path", iommu.ROOTPORTS)
    bad = case.check(_path_seen(dma_addr=BAR, records=[]))
    assert any("the BAR's own address, where an IOVA" in b for b in bad), bad
    assert any("expected one write from the importer" in b for b in bad), bad
    assert "P2P BUS_ADDR" in case.path(_path_seen(dma_addr=BAR))


def test_the_p2p_path_fails_on_the_wrong_vfio_path_or_domain() -> None:
    case = iommu.P2pPath("switch-acs-p2p-path", iommu.SWITCH_ACS)
    bad = case.check(_path_seen(vfio="noiommu", domain=1))
    assert any("through noiommu, not type1" in b for b in bad), bad
    assert any("domain is identity, expected translated" in b for b in bad), bad
    ident = iommu.P2pPath("identity-p2p-path", iommu.IDENTITY)
    assert ident.check(_path_seen(domain=1, dma_addr=BAR)) == []
    assert any("an IOVA where the BAR's address" in b
               for b in ident.check(_path_seen(domain=1)))


def test_the_taint_check_allows_the_test_importer_only() -> None:
    case = iommu.NoTaint("rootports-no-taint", iommu.ROOTPORTS)
    ok = Seen([_line(protocol.Tainted, mask=1 << 12)])
    assert case.check(ok) == [] and "O (bit 12)" in case.received(ok)
    noiommu = Seen([_line(protocol.Tainted, mask=1 << 12 | 1 << 6)])   # vfio's TAINT_USER
    assert case.check(noiommu) == ["the kernel is tainted beyond the test importer: "
                                   "U (bit 6)"]
    warn = Seen([_line(protocol.Tainted, mask=1 << 9)])
    assert "W (bit 9)" in case.check(warn)[0]
    assert case.check(Seen([])) == ["/proc/sys/kernel/tainted was not read"]


def _group_seen(open_errno: int = errno.EPERM, bind_ret: int = 1,
                bind_error: str = "Device or resource busy", same: bool = True) -> Seen:
    return Seen([_line(protocol.Groups, exporter=5, importer=5 if same else 6),
                 _line(protocol.Open, ret=-open_errno, errno=open_errno, vfio="type1"),
                 _line(protocol.BindImporter, ret=bind_ret, error=bind_error),
                 _line(protocol.Open, vfio="type1")])


def test_the_shared_group_passes_on_both_refusals() -> None:
    case = iommu.SharedGroup("shared-group-refused", iommu.SHARED_GROUP)
    assert case.check(_group_seen()) == []
    assert case.received(_group_seen()).startswith("open: ")


def test_the_shared_group_fails_when_vfio_or_the_driver_core_lets_either_through() -> None:
    case = iommu.SharedGroup("shared-group-refused", iommu.SHARED_GROUP)
    assert any("open #1 gave success, expected EPERM" in b
               for b in case.check(_group_seen(open_errno=0)))
    assert any("bound while VFIO held" in b for b in case.check(_group_seen(bind_ret=0)))
    assert any("not with EBUSY" in b
               for b in case.check(_group_seen(bind_error="No such device")))
    assert any("groups 5 and 6" in b for b in case.check(_group_seen(same=False)))


def _stale_seen(stale_errno: int = errno.EIO, faults: int = 1,
                records: int = 1) -> Seen:
    rec = {"requester-id": RID, "offset": 0, "length": protocol.DMA_LEN, "th": False,
           "ph": 0, "st": 0, "ext": False, "malformed": False}
    return Seen([_line(protocol.Open, vfio="iommufd"), _line(protocol.Get),
                 _line(protocol.Attach), _line(protocol.Dma, len=protocol.DMA_LEN),
                 _line(protocol.Detach),
                 _line(protocol.DmaStale, ret=-stale_errno, errno=stale_errno),
                 _line(protocol.DmarFaults, count=faults)], [rec] * records, RID)


def test_the_stale_iova_passes_on_a_refused_dma_and_a_dmar_fault() -> None:
    case = iommu.StaleIova("rootports-stale-iova", iommu.ROOTPORTS)
    assert case.check(_stale_seen()) == []
    assert case.received(_stale_seen()).startswith("1 DMAR fault(s)")


def test_the_stale_iova_fails_when_the_write_gets_through_or_goes_unreported() -> None:
    case = iommu.StaleIova("rootports-stale-iova", iommu.ROOTPORTS)
    assert any("expected EIO" in b for b in case.check(_stale_seen(stale_errno=0)))
    assert any("no DMAR fault" in b for b in case.check(_stale_seen(faults=0)))
    assert any("only the mapped DMA" in b for b in case.check(_stale_seen(records=2)))


def test_a_shell_line_prints_what_the_parser_reads() -> None:
    import subprocess
    cmd = protocol.shell_line(protocol.Groups, exporter="$((2 + 3))", importer="7")
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True).stdout
    assert tphctl_output.parse(out)[0] == [protocol.Groups(exporter=5, importer=7)]


# The series withholds 16-bit tags across the Root Complex (get_pci_tph of an
# attachment): what the IOMMU topologies expect follows from it.

def test_across_the_root_complex_the_8_bit_tag_or_none() -> None:
    cases = {c.name: c for c in hint_cases.matrix()}
    ext_only = hint_cases.across_root_complex(cases["ext-st"])
    assert (ext_only.wire, ext_only.attach_ret) == (None, -errno.EOPNOTSUPP)
    both = hint_cases.across_root_complex(cases["both-ns-ext"])
    assert (both.wire, both.attach_ret) == (hint_cases.Hint(0x12, 2, False), 0)
    assert "withheld" in both.summary
    st8 = cases["st8-only-ext-importer"]
    assert hint_cases.across_root_complex(st8) is st8


def test_no_scenario_expects_a_16_bit_tag_across_the_root_complex() -> None:
    crossing = [c for c in matrix.full() if c.topo.iommu or c.topo.placement == "rciep"]
    assert len(crossing) > 40
    for c in crossing:
        if isinstance(c, hint_cases.Case):
            assert c.wire is None or not c.wire.ext, c.name
        else:   # scripted ones set the 8-bit tag, alone or beside the 16-bit one
            assert "ST_EXT=0x" not in c.describe_set() or "ST=0x" in c.describe_set(), c.name
    assert {c.name for c in crossing if c.topo is iommu.RC_NO_PREFIX} >= {
        "rc-no-eetlp-prefix-p2p-path", "rc-no-eetlp-prefix-both-ns-ext",
        "rc-no-eetlp-prefix-no-taint"}


def test_the_revocations_across_the_root_complex_use_8_bit_tags() -> None:
    narrow = {c.name: c for c in revoke.cases(revoke.Tags(ext=False))}
    assert narrow["revoke-decode"].describe_set().startswith("ST=0xa1 PH=1, attach")
    assert "ST=0xa2 PH=2" in narrow["revoke-decode"].describe_set()
    assert revoke.cases()[0].describe_set().startswith("ST_EXT=0x1a1 PH=1")
    assert revoke.Tags(ext=False).of(revoke.LONG) == (0xA3, 3)
