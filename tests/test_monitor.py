"""rig.guest.qmp: QMP messages are formatted for the debug log only when it is on."""

from __future__ import annotations

import logging

import pytest
from qemu.qmp.message import Message

from rig.guest import qmp


class _Counted:
    def __init__(self) -> None:
        self.formatted = 0

    def __str__(self) -> str:
        self.formatted += 1
        return "{...}"


def test_messages_are_not_formatted_while_the_debug_log_is_off(
        caplog: pytest.LogCaptureFixture) -> None:
    mon = qmp.Monitor("/nonexistent/qmp.sock")
    client = mon._qmp
    assert isinstance(client, qmp._Client)
    msg = _Counted()
    with caplog.at_level(logging.INFO, logger=client.logger.name):
        assert client._cb_inbound(msg) is msg
        assert client._cb_outbound(msg) is msg
    assert msg.formatted == 0
    with caplog.at_level(logging.DEBUG, logger=client.logger.name):
        client._cb_inbound(msg)
        client._cb_outbound(msg)
    assert msg.formatted == 2
    assert [r.getMessage() for r in caplog.records] == ["<-- {...}", "--> {...}"]


def test_debug_log_shows_a_message_as_one_line_of_json_cut_when_long(
        caplog: pytest.LogCaptureFixture) -> None:
    client = qmp.Monitor("/nonexistent/qmp.sock")._qmp
    small = Message({"execute": "x-query-tph-hints", "arguments": {"since": 0}})
    big = Message({"return": {"records": [{"seq": i} for i in range(1000)]}})
    with caplog.at_level(logging.DEBUG, logger=client.logger.name):
        client._cb_outbound(small)
        client._cb_inbound(big)
    sent, got = (r.getMessage() for r in caplog.records)
    assert sent == '--> {"execute":"x-query-tph-hints","arguments":{"since":0}}'
    assert "\n" not in got and len(got) < qmp.LOG_LIMIT + 100
    assert got.endswith(f"... ({len(bytes(big))} characters)")
