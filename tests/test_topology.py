from __future__ import annotations

from pathlib import Path

from rig.guest import topology


def _boot(accel: str = "tcg") -> topology.Boot:
    p = Path("/x")
    return topology.Boot(p / "qemu", p / "qboot.rom", p / "share", p / "bzImage", p / "initrd",
                         accel, 2222,
                         p / "qmp.sock", p / "console.log")


def _devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]


def test_default_topology_puts_both_endpoints_behind_one_switch() -> None:
    argv = topology.qemu_argv(_boot(), topology.Topology())
    devs = _devices(argv)
    rp = next(d for d in devs if d.startswith("pcie-root-port"))
    assert "x-tph-completer=ext" in rp and "id=rp0" in rp
    assert "x3130-upstream,id=up0,bus=rp0" in devs
    exp = next(d for d in devs if "id=tphexp" in d)
    imp = next(d for d in devs if "id=tphimp" in d)
    assert exp.startswith("tph-testdev,") and "bus=dn0" in exp and "tph-completer=ext" in exp
    assert imp.startswith("tph-testdev,") and "bus=dn1" in imp and "ext-tph=on" in imp
    assert any(d.startswith("xio3130-downstream,id=dn0,bus=up0") for d in devs)
    assert any(d.startswith("xio3130-downstream,id=dn1,bus=up0") for d in devs)


def test_machine_firmware_accel_and_forwarding() -> None:
    argv = topology.qemu_argv(_boot(), topology.Topology())
    joined = " ".join(argv)
    assert "-machine q35" in joined and "-bios /x/qboot.rom" in joined
    assert "-accel tcg" in joined and "-nodefaults" in joined and "-no-reboot" in joined
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in joined
    assert "-qmp unix:/x/qmp.sock,server=on,wait=off" in joined
    append = argv[argv.index("-append") + 1]
    assert "console=ttyS0" in append and "vfio.enable_unsafe_noiommu_mode=1" in append
    kvm = topology.qemu_argv(_boot("kvm"), topology.Topology())
    assert "-accel kvm" in " ".join(kvm)


def test_scenario_variations_reach_the_command_line() -> None:
    topo = topology.Topology().with_(root_port_completer="none", append=("pci=notph",))
    argv = topology.qemu_argv(_boot(), topo)
    rp = next(d for d in _devices(argv) if d.startswith("pcie-root-port"))
    assert "x-tph-completer" not in rp
    assert argv[argv.index("-append") + 1].endswith("pci=notph")


def test_without_the_device_only_the_switch_is_built() -> None:
    devs = _devices(topology.qemu_argv(_boot(), topology.Topology(), tph_devices=False))
    assert not any("tph-testdev" in d or "x-tph-completer" in d for d in devs)


def test_rcieps_sit_on_the_root_bus_with_the_cpu_model_asked_for() -> None:
    topo = topology.Topology(name="rciep", placement="rciep", cpu_model="EPYC", spare=True)
    for accel in ("tcg", "kvm"):
        argv = topology.qemu_argv(_boot(accel), topo)
        devs = _devices(argv)
        assert not any(d.startswith(("pcie-root-port", "x3130", "xio3130")) for d in devs)
        tph = [d for d in devs if d.startswith("tph-testdev,")]
        assert [d.split(",")[1:3] for d in tph] == [["id=tphexp", "bus=pcie.0"],
                                                    ["id=tphimp", "bus=pcie.0"],
                                                    ["id=tphspare", "bus=pcie.0"]]
        assert argv[argv.index("-cpu") + 1] == "EPYC"
    assert "RCIEPs on pcie.0" in topo.describe() and "CPU EPYC" in topo.describe()
    plain = topology.qemu_argv(_boot(), topology.Topology())
    assert plain[plain.index("-cpu") + 1] == topology.TCG_CPU
    assert topology.qemu_argv(_boot("kvm"), topology.Topology()).count("host") == 1
