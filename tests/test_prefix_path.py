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


# tests/data/run-before-rc-rule.json is `rig run --kernel-series` of the
# series before it withheld the 16-bit tag across the Root Complex (5
# patches, get_pci_tph of a dma-buf as in v11), -k the scenarios where that
# changed. Across a Root Complex that does not forward the prefix the
# 16-bit tag arrives Malformed and the DMA fails: a fault on the wire. Across
# one that does, it arrives: a difference from the series' contract only.
RC_DROPS = ["rc-no-eetlp-prefix-p2p-path", "rc-no-eetlp-prefix-ext-st",
            "rc-no-eetlp-prefix-both-ns-ext"]
RC_FORWARDS = ["rootports-p2p-path", "rootports-ext-st", "rootports-ph1",
               "rciep-ext-withheld"]


@pytest.mark.parametrize("name", RC_DROPS + RC_FORWARDS)
def test_the_series_withholds_the_16_bit_tag_across_the_root_complex(name: str) -> None:
    doc = _docs("run-tcg.json")[name]
    assert _check(doc) == []
    assert not any(r["ext"] or r["malformed"] for r in doc["records"]), name


def test_before_the_rule_a_16_bit_tag_arrived_malformed_where_the_rc_drops_it() -> None:
    old = _docs("run-before-rc-rule.json")
    for name in RC_DROPS:
        rec, = old[name]["records"]
        assert rec["ext"] and rec["malformed"], name
        assert any("Input/output error" in f for f in _check(old[name])), name
    for name in RC_FORWARDS:
        rec, = old[name]["records"]
        assert rec["ext"] and not rec["malformed"], name
        assert _check(old[name]), name
    # What did not change passes there too
    for name in ("rc-no-eetlp-prefix-no-tph", "rc-no-eetlp-prefix-st8-only-ext-importer"):
        assert _check(old[name]) == [], name
