"""The CLI's error paths: one clear error, the fix, exit code 2, nothing cached."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rig import tools
from rig.cli import main as cli_main
from rig.cli import run as cli_run
from rig.errors import ToolError
from rig.execution import runner
from rig.execution.request import Reports, RunRequest


def test_missing_tool_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t: None if t in ("flex", "rsync") else real(t))
    with pytest.raises(ToolError) as exc:
        tools.require(["gcc", "flex", "rsync"], "the kernel build")
    assert "the kernel build needs flex, rsync" in exc.value.message
    assert exc.value.fix == "apt-get install -y flex rsync"


def test_missing_tarball_exits_2_with_the_fix(cache_home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main.main(["build", "qemu", "--qemu-tarball", "/nonexistent/qemu-10.0.13.tar.xz",
                   "--qemu-sha256", "0" * 64])
    err = capsys.readouterr().err
    assert rc == 2
    assert "tarball /nonexistent/qemu-10.0.13.tar.xz does not exist" in err
    assert "fix:" in err
    assert not any((cache_home / "artifacts").rglob("meta.json"))


def test_wrong_sha256_exits_2_and_caches_nothing(tmp_path: Path, cache_home: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    tb = tmp_path / "linux-7.2.13.tar.xz"
    tb.write_bytes(b"\xfd7zXZ not really")
    rc = cli_main.main(["build", "kernel", "--kernel-tarball", str(tb), "--kernel-sha256",
                        "ab" * 32])
    err = capsys.readouterr().err
    assert rc == 2 and "sha256 mismatch" in err and "ab" * 32 in err
    assert not any((cache_home / "artifacts").rglob("meta.json"))


def test_unknown_scenario_pattern_lists_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main.main(["run", "-k", "no-such-scenario"])
    err = capsys.readouterr().err
    assert rc == 2 and "matches no scenario" in err and "st8-ph0" in err


def test_out_of_range_custom_hint_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main.main(["run", "--st", "0x10000", "--ph", "1"])
    assert rc == 2 and "ST is 0..0xffff" in capsys.readouterr().err


def test_rig_run_arguments_become_one_typed_request() -> None:
    args = cli_main.parser().parse_args(
        ["run", "-k", "a", "-k", "b", "--st", "0x42", "--json", "r.json", "--no-snapshot",
         "--timeout", "5", "--inject", "panic", "--ktap"])
    request = cli_run.run_request(args)
    assert request == RunRequest(patterns=("a", "b"), st=0x42, case_timeout=5.0,
                                 fault="panic", snapshots=False,
                                 reports=Reports(json=Path("r.json"), ktap=True))
    opts = runner.Options.of(request)
    assert (opts.case_timeout, opts.boot_timeout, opts.fault, opts.snapshots) == (
        5.0, 120.0, "panic", None)
    assert cli_run.run_request(cli_main.parser().parse_args(["run"])) == RunRequest()
