from __future__ import annotations

from pathlib import Path

import pytest

from rig.builder import kconfig
from rig.errors import ConfigError

FRAGMENT = """\
# comment
CONFIG_PCI=y
CONFIG_PCIE_TPH=y
CONFIG_X86_MSR=n
# CONFIG_MODULES is not set
CONFIG_CMDLINE="console=ttyS0"
"""


def test_parse_reads_set_unset_and_strings() -> None:
    opts = kconfig.parse(FRAGMENT)
    assert opts == {"CONFIG_PCI": "y", "CONFIG_PCIE_TPH": "y", "CONFIG_X86_MSR": "n",
                    "CONFIG_MODULES": "n", "CONFIG_CMDLINE": '"console=ttyS0"'}


def test_parse_rejects_garbage_with_line_number() -> None:
    with pytest.raises(ConfigError, match=r"frag:2: not a config line"):
        kconfig.parse("CONFIG_A=y\nPCI=y\n", "frag")


def test_check_names_each_dropped_or_changed_option() -> None:
    frag = kconfig.parse(FRAGMENT)
    config = kconfig.parse('CONFIG_PCI=y\nCONFIG_CMDLINE="console=ttyS0"\nCONFIG_X86_MSR=y\n')
    bad = {m.option: str(m) for m in kconfig.check(frag, config)}
    assert set(bad) == {"CONFIG_PCIE_TPH", "CONFIG_X86_MSR"}
    assert bad["CONFIG_PCIE_TPH"] == "CONFIG_PCIE_TPH: asked y, got not set"
    assert bad["CONFIG_X86_MSR"] == "CONFIG_X86_MSR: asked not set, got y"


def test_check_accepts_a_config_that_holds_everything() -> None:
    frag = kconfig.parse(FRAGMENT)
    config = kconfig.parse('CONFIG_PCI=y\nCONFIG_PCIE_TPH=y\nCONFIG_CMDLINE="console=ttyS0"\n'
                           "# CONFIG_X86_MSR is not set\nCONFIG_OTHER=y\n")
    assert kconfig.check(frag, config) == []


def test_check_files_error_lists_options_and_fix(tmp_path: Path) -> None:
    frag = tmp_path / "tphlab.config"
    frag.write_text("CONFIG_PCI_P2PDMA=y\nCONFIG_VFIO=y\n")
    cfg = tmp_path / ".config"
    cfg.write_text("CONFIG_VFIO=y\n")
    with pytest.raises(ConfigError) as exc:
        kconfig.check_files(frag, cfg)
    assert "CONFIG_PCI_P2PDMA: asked y, got not set" in exc.value.message
    assert "1 option(s) of tphlab.config" in exc.value.message
    assert exc.value.fix and "depend" in exc.value.fix
