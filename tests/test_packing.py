"""Placements packed into machines: which share a guest, the command line of a
packed guest, and the runner keeping each scenario's evidence and fate its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rig.execution import runner
from rig.guest import faults, packing, topology
from rig.guest.topology import Topology
from rig.results.run import EXIT_GUEST, Outcome, Run, Status
from rig.scenarios import hint_cases, iommu, matrix

from .fakes import P1, P2, TCG, A, FakeCase, FakeGuest, FakeLab, fake_arts


def _boot() -> topology.Boot:
    p = Path("/x")
    return topology.Boot(p, p, p, p, p, "tcg", 2222, p / "qmp", p / "console")


def _devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]


def _prop(spec: str, key: str) -> str | None:
    m = re.search(rf"(?:^|,){key}=([^,]+)", spec)
    return m.group(1) if m else None


def test_the_matrix_packs_into_the_machines_its_machine_wide_settings_need() -> None:
    """No IOMMU: plain, pci=notph, the EPYC CPU (RCiEPs), the host bridge's _DSM;
    an IOMMU: translating (strict), passthrough, a Root Complex without
    End-End TLP Prefixes between its ports. Seven guests for 17 topologies."""
    machines = packing.pack([t for t, _ in matrix.topologies()])
    assert [m.name for m in machines] == [
        "default+8", "pci-notph", "rciep-epyc", "cpu-st-dsm", "iommu-rootports+2",
        "iommu-identity", "iommu-rc-no-eetlp-prefix"]
    assert sum(len(m.pairs()) for m in machines) == len(matrix.topologies()) == 17
    for m in machines:
        assert len({packing.machine_key(p) for p in m.pairs()}) == 1
    translated = machines[4]
    assert [p.name for p in translated.pairs()] == [
        "iommu-rootports", "iommu-switch-acs", "iommu-shared-group"]
    assert (translated.memory_mb, translated.cpus, translated.iommu) == (2048, 2, True)


def test_placements_with_other_machine_wide_settings_never_share() -> None:
    plain = Topology(name="p")
    for other in (plain.with_(name="q", append=("pci=notph",)),
                  plain.with_(name="q", cpu_model="EPYC"),
                  plain.with_(name="q", host_bridge={"x-tph-cpu-st": "0x1"}),
                  plain.with_(name="q", iommu=True, vfio="type1")):
        assert [m.name for m in packing.pack([plain, other])] == ["p", "q"]
        with pytest.raises(ValueError, match="machine-wide"):
            packing.machine_of([plain, other])
    # Per placement: a port's completer, an importer's tag width, ACS, VFIO's way
    same = [plain.with_(name="q", root_port_completer="none"),
            plain.with_(name="r", importer={"ext-tph": "off"}),
            plain.with_(name="s", placement="rootports", spare=True)]
    assert [m.name for m in packing.pack([plain, *same])] == ["p+3"]


def test_a_machine_opens_another_when_pcie0_has_no_slot_left() -> None:
    ports = [Topology(name=f"r{n}", placement="rootports", spare=True) for n in range(12)]
    machines = packing.pack(ports)
    assert [len(m.pairs()) for m in machines] == [9, 3]     # 3 slots each, 28 on pcie.0
    assert packing.pack(ports[:1]) == ports[:1], "a machine of one is the placement itself"


def test_a_packed_machines_devices_and_ports_are_each_placements_own() -> None:
    machine = runner.groups(matrix.full())[0][0]
    argv = topology.qemu_argv(_boot(), machine)
    devs = _devices(argv)
    ids = [_prop(d, "id") for d in devs if _prop(d, "id")]
    assert len(ids) == len(set(ids)), "every device id once"
    on_root = [_prop(d, "addr") for d in devs if _prop(d, "bus") == "pcie.0"]
    assert len(on_root) == len(set(on_root)) == len(machine.pairs()) + 1   # + the NIC
    chassis = [(_prop(d, "chassis"), _prop(d, "slot")) for d in devs if _prop(d, "chassis")]
    assert len(chassis) == len(set(chassis)), "PCIe slot numbers are the machine's"
    for p in machine.pairs():
        qom = p.qom_ids(machine)
        assert qom["exporter"] == f"tphexp.{p.name}"
        exp = next(d for d in devs if _prop(d, "id") == qom["exporter"])
        imp = next(d for d in devs if _prop(d, "id") == qom["importer"])
        # Each pair below a root port of its own: a bus reset is its own
        assert _prop(exp, "bus") == f"dn0.{p.name}" and _prop(imp, "bus") == f"dn1.{p.name}"
        rp = next(d for d in devs if _prop(d, "id") == f"rp0.{p.name}")
        assert (_prop(rp, "x-tph-completer") or "none") == p.root_port_completer
        for port in p.no_prefix_ports:
            spec = next(d for d in devs if _prop(d, "id") == f"{port}.{p.name}")
            assert "x-eetlp-prefix=off" in spec
    assert "ext-tph=off" in next(d for d in devs if _prop(d, "id") == "tphimp.importer-8bit")


def test_a_machine_of_one_placement_is_that_topology_unchanged() -> None:
    for topo in (hint_cases.DEFAULT, iommu.ROOTPORTS, hint_cases.RCIEP, iommu.SHARED_GROUP):
        (machine,) = packing.pack([topo])
        assert machine is topo
        ids = [_prop(d, "id") for d in _devices(topology.qemu_argv(_boot(), machine))]
        assert "tphexp" in ids and "tphimp" in ids


def _run(lab: FakeLab, cases: list[FakeCase], tmp_path: Path, **opts: object) -> Run:
    rundir = tmp_path / "run"
    rundir.mkdir(exist_ok=True)
    opts.setdefault("jobs", 2)
    return runner.run_matrix(cases, fake_arts(tmp_path), TCG, rundir,
                             opts=runner.Options(vm_factory=lab.factory,
                                                 **opts))  # type: ignore[arg-type]


CASES = [FakeCase("p1a", P1), FakeCase("a1", A), FakeCase("p2a", P2), FakeCase("p1b", P1),
         FakeCase("p2b", P2)]


def _guest(lab: FakeLab, name: str) -> FakeGuest:
    return next(g for g in lab.guests if g.topo.name == name)


def test_a_packed_guest_runs_each_scenario_on_its_own_placements_devices(
        tmp_path: Path) -> None:
    lab = FakeLab()
    run = _run(lab, CASES, tmp_path)
    assert all(o.status is Status.PASS for o in run.outcomes)
    assert sorted(g.topo.name for g in lab.guests) == ["alpha", "pair-one+1"]
    assert set(run.boots) == {"alpha", "pair-one+1"}
    # Each outcome names the guest that held it, in the report too
    assert {o.name: o.guest for o in run.outcomes} == {
        "a1": "alpha", "p1a": "pair-one+1", "p2a": "pair-one+1", "p1b": "pair-one+1",
        "p2b": "pair-one+1"}
    assert all(Outcome.from_dict(o.to_dict()).guest == o.guest for o in run.outcomes)
    packed = _guest(lab, "pair-one+1")
    # In the order of the matrix; the hint log read at the scenario's own exporter
    assert [c.split("fake-scenario ")[1].split(";")[0] for c in packed.scenario_commands] == [
        "p1a", "p2a", "p1b", "p2b"]
    paths = packed.qmp_paths
    assert paths[:2] == ["/machine/peripheral/tphexp.pair-one"] * 2
    assert paths[2:4] == ["/machine/peripheral/tphexp.pair-two"] * 2
    # tphctl opens the scenario's own importer (bound at slots 3.. by the fake)
    assert "TPHLAB_IMPORTER=0000:00:04.0 " in packed.scenario_commands[0]
    assert "TPHLAB_IMPORTER=0000:00:06.0 " in packed.scenario_commands[1]
    # Unpacked: a guest each, the same verdicts
    lab2 = FakeLab()
    alone = _run(lab2, CASES, tmp_path, pack=False)
    assert sorted(g.topo.name for g in lab2.guests) == ["alpha", "pair-one", "pair-two"]
    assert [(o.name, o.status) for o in alone.outcomes] == [
        (o.name, o.status) for o in run.outcomes]
    assert [o.topology for o in alone.outcomes] == [o.topology for o in run.outcomes]


def test_a_killed_packed_guest_marks_only_the_scenarios_it_held(tmp_path: Path) -> None:
    lab = FakeLab(fate={"p2a": "kill"})
    run = _run(lab, CASES, tmp_path)
    status = {o.name: o.status for o in run.outcomes}
    assert status == {"p1a": Status.PASS, "a1": Status.PASS, "p2a": Status.CRASHED,
                      "p1b": Status.NOT_RUN, "p2b": Status.NOT_RUN}
    assert run.exit_code == EXIT_GUEST
    p1b = next(o for o in run.outcomes if o.name == "p1b")
    assert p1b.failures == ["not run: the guest (pair-one+1) died in scenario p2a"]
    assert p1b.guest == "pair-one+1"


def test_a_fault_injected_into_one_topology_reaches_only_its_guest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Into one topology: right before its first scenario, in its guest only (the
    scenarios before it ran); without a topology: every guest, once bound."""
    lab = FakeLab()
    into: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(faults, "inject", lambda vm, fault: into.append(
        (vm.topo.name, [name for name, _, _ in lab.ran])))
    _run(lab, CASES, tmp_path, fault="warn", fault_into="pair-two", jobs=1)
    assert into == [("pair-one+1", ["p1a"])]
    into.clear()
    lab.ran.clear()
    _run(lab, CASES, tmp_path, fault="warn", jobs=1)
    assert into == [("pair-one+1", []), ("alpha", ["p1a", "p2a", "p1b", "p2b"])]


def test_a_kept_packed_guest_says_how_tphctl_picks_a_topologys_importer() -> None:
    from types import SimpleNamespace

    from rig.cli.guest import session_text
    from rig.guest.devices import Bench, Benches

    benches = Benches({"pair-one": Bench("0000:03:00.0", "0000:04:00.0", suffix=".pair-one"),
                       "pair-two": Bench("0000:05:00.0", "0000:06:00.0", suffix=".pair-two")})
    sess = SimpleNamespace(devices=benches.devices(), ssh_port=2222, client_key="k",
                           qmp_socket="q", console_log="c")
    text = session_text(sess)  # type: ignore[arg-type]
    assert "TPHLAB_IMPORTER=0000:04:00.0 tphctl open exporter.pair-one" in text
    assert "exporter.pair-two: 0000:05:00.0  QOM tphexp.pair-two" in text
    alone = Benches({"default": Bench("0000:03:00.0", "0000:04:00.0")})
    sess.devices = alone.devices()
    assert "in the guest: tphctl open exporter ..." in session_text(sess)  # type: ignore[arg-type]
