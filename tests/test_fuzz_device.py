"""rig fuzz device without QEMU: generic-fuzz's input format, reproducers,
coverage read from llvm-cov's exports, the report."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from rig.cli.main import main
from rig.errors import ToolError
from rig.fuzz import coverage, device, generic_input, reproducer
from rig.fuzz.generic_input import SEPARATOR, Input


def test_commands_fill_generic_fuzz_structs_as_the_c_compiler_lays_them_out() -> None:
    # op_write: {u8 size; u8 base; u32 offset; u64 value}: 16 bytes after the op
    w = Input().write(7, 0x2C, 0x1122334455667788, 8).commands[0]
    assert len(w) == 1 + 16 and w[0] == generic_input.OP_WRITE
    assert struct.unpack_from("<BB2xIQ", w, 1) == (3, 7, 0x2C, 0x1122334455667788)
    # op_read: {u8 size; u8 base; u32 offset}: 8 bytes
    r = Input().read(1, 0x30).commands[0]
    assert len(r) == 1 + 8 and struct.unpack_from("<BB2xI", r, 1) == (2, 1, 0x30)
    # op_pci_write: {u8 size; u8 base; u8 offset; u32 value}: 8 bytes, to each device
    cw = Input().config_write(0x108, 0x302).commands
    assert [struct.unpack_from("<BBBxI", c, 1) for c in cw] == [(2 | 1 << 2, 0, 0x08, 0x302),
                                                               (2 | 1 << 2, 1, 0x08, 0x302)]
    # Below 0x100 the size byte is the size alone (inputs of devices on bus 0)
    low = Input(devices=1).config_write(0x62, 0x8000, 2).commands[0]
    assert low[1] == 1 and low[3] == 0x62


def test_seeds_keep_every_command_whole() -> None:
    """A separator inside a command would cut it in two: none may hold one,
    and each seed is what the fuzzer splits it into."""
    seeds = generic_input.seeds()
    assert len(seeds) >= 15
    for name, data in seeds.items():
        parts = data.split(SEPARATOR)
        assert all(parts), name
        assert data.startswith(parts[0]) and len(parts) > 3, name


def test_seeds_are_written_as_files(tmp_path: Path) -> None:
    paths = generic_input.write_seeds(tmp_path / "s")
    assert {p.name for p in paths} == {f"seed-{n}" for n in generic_input.seeds()}
    assert all(p.read_bytes() for p in paths)


def test_a_reproducer_reads_back_what_it_wrote() -> None:
    args = reproducer.qemu_args("-display none -machine accel=qtest, -m 512M -machine q35 "
                                "-device tph-testdev,bus=dn1 -qtest /dev/null -qtest-log none")
    assert args == ["-display", "none", "-machine", "accel=qtest,", "-m", "512M", "-machine",
                    "q35", "-device", "tph-testdev,bus=dn1"]
    text = reproducer.render(args, ["outl 0xcf8 0x80000064", "writel 0xc0200010 0xc0100000"])
    assert text.splitlines()[0].endswith("-qtest stdio")
    assert reproducer.parse(text) == (args, ["outl 0xcf8 0x80000064",
                                             "writel 0xc0200010 0xc0100000"])
    with pytest.raises(ToolError, match="not a reproducer"):
        reproducer.parse("outl 0xcf8 0\n")


LCOV = """SF:/src/hw/misc/tph-testdev.c
DA:10,1
DA:11,0
DA:12,4
DA:20,0
DA:21,0
DA:30,2
DA:31,0
BRDA:11,0,0,1
BRDA:11,0,1,0
BRDA:21,0,0,-
end_of_record
SF:/src/hw/pci/pcie.c
DA:100,3
DA:101,0
DA:200,0
end_of_record
"""


def _fn(name: str, file: str, first: int, last: int) -> dict[str, object]:
    return {"name": name, "filenames": [file], "regions": [[first, 1, last, 2, 1, 0, 0, 0]]}


JSON = {"data": [{"functions": [
    _fn("tph_regs_write", "/src/hw/misc/tph-testdev.c", 10, 12),
    _fn("qmp_x_query_tph_hints", "/src/hw/misc/tph-testdev.c", 20, 21),
    _fn("tph_realize", "/src/hw/misc/tph-testdev.c", 30, 31),
    _fn("pcie_tph_write_config", "/src/hw/pci/pcie.c", 100, 101),
    _fn("pcie_aer_init", "/src/hw/pci/pcie.c", 200, 200)]}]}


def test_coverage_counts_guest_reachable_lines_apart_from_qmp_and_set_up() -> None:
    cov = coverage.from_exports(LCOV, JSON)
    assert (cov.guest.covered, cov.guest.total, cov.guest.missed) == (2, 3, [11])
    assert (cov.qmp.covered, cov.qmp.total) == (0, 2)
    assert (cov.setup.covered, cov.setup.total) == (1, 2)
    # Branches of guest-reachable functions only; "-" is a branch never evaluated
    assert (cov.branches.covered, cov.branches.total) == (1, 2)
    # The TPH helpers: pcie.c's functions named for TPH, not the others
    assert (cov.helpers.covered, cov.helpers.total) == (1, 2)
    assert cov.missed_by_function == {"tph_regs_write": [11]}
    text = coverage.render(cov)
    assert "guest-reachable lines" in text and "66.7%" in text
    assert "not run in tph_regs_write: lines 11" in text


def test_coverage_without_the_device_names_the_fix() -> None:
    with pytest.raises(ToolError, match=r"no line of hw/misc/tph-testdev\.c") as err:
        coverage.from_exports("SF:/x/other.c\nDA:1,1\nend_of_record\n", JSON)
    assert "rig build qemu --sanitize" in (err.value.fix or "")


def test_the_report_lists_each_configuration_and_each_crash() -> None:
    crash = device.Crash("tph-testdev-switch", "/r/crash-1", "SUMMARY: AddressSanitizer: x",
                         "/r/fuzz.log", "/r/crash-1.qtest", True)
    res = device.DeviceFuzz([device.ConfigRun("tph-testdev-switch", 20.0, 1200, 60.0, 3100,
                                              120, 30, [crash])], "/r")
    text = device.render(res)
    assert "tph-testdev-switch" in text and "1200" in text
    assert "crash in tph-testdev-switch: SUMMARY: AddressSanitizer: x" in text
    assert "(replays on qemu-system-x86_64)" in text
    assert res.crashes == [crash] and res.to_dict()["runs"]


def test_an_unknown_configuration_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no generic-fuzz configuration nope"):
        device.run(tmp_path / "fuzz", tmp_path / "q", tmp_path, 10, tmp_path / "r",
                   progress=None, configs=("nope",))  # type: ignore[arg-type]


def test_fuzz_device_refuses_bad_options_before_building(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fuzz", "device", "--config", "nope"])
    assert "invalid choice" in capsys.readouterr().err
    assert main(["fuzz", "device", "--time", "0"]) == 2
    err = capsys.readouterr().err
    assert "--time 0" in err and "positive number of seconds" in err
