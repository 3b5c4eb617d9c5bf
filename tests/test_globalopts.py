"""rig's global options: --version, and -v turning on the debug log."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterator

import pytest

from rig.cli import globalopts
from rig.cli import main as cli_main


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """-v configures the root logger: put it back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {n: logging.getLogger(n).level for n in globalopts.QUIET}
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in quiet.items():
        logging.getLogger(name).setLevel(lvl)


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"rig {importlib.metadata.version('tphlab-rig')}\n"


def test_version_is_unknown_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(dist: str) -> str:
        raise importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert globalopts.version() == "unknown"


def test_verbose_before_or_after_the_command(root_logger: logging.Logger) -> None:
    p = cli_main.parser()
    assert p.parse_args(["stop"]).verbose is False
    assert p.parse_args(["-v", "stop"]).verbose is True
    assert p.parse_args(["run", "-v", "-k", "no-tph"]).verbose is True
    assert p.parse_args(["--verbose", "hints"]).verbose is True
    # A command's own -v is the command's
    ssh = p.parse_args(["ssh", "uname", "-v"])
    assert ssh.cmd == ["uname", "-v"] and ssh.verbose is False


def test_verbose_sends_the_debug_log_to_stderr(root_logger: logging.Logger,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("rig.guest.ssh").debug("before -v")
    cli_main.parser().parse_args(["-v", "keys"])
    cli_main.parser().parse_args(["-v", "keys"])   # a second -v adds no second handler
    logging.getLogger("rig.guest.ssh").debug("ssh 127.0.0.1:2222 $ uname")
    logging.getLogger("paramiko.transport").debug("kex noise")
    err = capsys.readouterr().err
    assert "before -v" not in err and "kex noise" not in err
    assert err.count("rig.guest.ssh: ssh 127.0.0.1:2222 $ uname") == 1
