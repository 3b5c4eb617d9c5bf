"""The End-End TLP Prefix path scenarios, on output recorded from real runs.

tests/data/run-v11-eetlp.json is `rig run -k eetlp --json` with the kernel
series as it was before the prefix-path fix (v11's negotiation: Extended
TPH against the Root Port only); tests/data/run-tcg.json has the same
scenarios on the fixed series. The checks must fail on the first, for the
reason the bench found, and pass on the second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rig.guest import topology
from rig.scenarios import matrix
from rig.scenarios.kit import Seen

DATA = Path(__file__).parent / "data"
NAMES = ["eetlp-exporter-port-ext", "eetlp-exporter-port-8bit", "eetlp-importer-port",
         "eetlp-whole-switch"]


def _docs(run: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in json.loads((DATA / run).read_text())["scenarios"]}


def _check(doc: dict[str, Any]) -> list[str]:
    case = next(c for c in matrix.full() if c.name == doc["name"])
    recs = doc["records"]
    return case.check(Seen(doc["steps"], recs, int(recs[0]["requester-id"])))


@pytest.mark.parametrize("name", NAMES)
def test_the_fixed_series_passes(name: str) -> None:
    assert _check(_docs("run-tcg.json")[name]) == []


def test_the_old_series_sends_a_malformed_16_bit_tag_across_the_port() -> None:
    old = _docs("run-v11-eetlp.json")
    for name in ("eetlp-exporter-port-ext", "eetlp-importer-port"):
        rec, = old[name]["records"]
        assert rec["ext"] and rec["malformed"], name
        assert any(f.startswith("DMA failed") for f in _check(old[name])), name
    # After ST_EXT was accepted, ST alone replaced it: the SET's errno is all
    # that is wrong there.
    bad = _check(old["eetlp-exporter-port-8bit"])
    assert bad == ["SET #1 (ST=0x5a ST_EXT=0xa5a5 PH=1 (ENOTSUP)) gave errno 0, expected 95"]
    # The whole switch: the same, the exporter accepted the 16-bit tag
    bad = _check(old["eetlp-whole-switch"])
    assert bad == ["SET #1 (ST=0x7c ST_EXT=0xc7c7 PH=3 (ENOTSUP)) gave errno 0, expected 95"]


def test_a_port_without_prefix_support_is_on_the_command_line() -> None:
    topo = topology.Topology(name="t", no_prefix_ports=("dn0", "up0"))
    devs = [a for a in topology.device_args(topo, tph_devices=True) if a != "-device"]
    off = [d.split(",")[1] for d in devs if "x-eetlp-prefix=off" in d]
    assert off == ["id=up0", "id=dn0"]
    assert "no End-End TLP Prefixes on dn0, up0" in topo.describe()
    # A QEMU without our series has no such property: it is left out
    assert not any("x-eetlp-prefix" in a for a in topology.device_args(topo, False))
    with pytest.raises(ValueError, match="no switch port dn7; the ports are rp0, up0, dn0, dn1"):
        topology.device_args(topo.with_(no_prefix_ports=("dn7",)), True)


def test_rcieps_have_no_ports_to_clear_prefix_support_on() -> None:
    topo = topology.Topology(name="r", placement="rciep", no_prefix_ports=("dn0",))
    with pytest.raises(ValueError, match="RCiEPs have no ports"):
        topology.device_args(topo, True)
