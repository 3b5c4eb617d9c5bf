"""The QMP client the rig uses: qemu.qmp's synchronous one, minus a slow log.

qemu.qmp 0.0.6 formats every message it sends or receives as indented JSON
for its debug log, whether or not that log is enabled. For a reply of 4096
hint records (460 KB of JSON) that formatting took twice as long as QEMU's
answer itself. The client below formats only when the debug log is on
(`rig -v`), through the hooks qemu.qmp provides for subclasses
(_cb_inbound and _cb_outbound, as its own qmp_tui does), as one line of
JSON cut at LOG_LIMIT characters.

The library's connect() and close() have no timeout: Monitor's take one.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, TypeVar

from qemu.qmp.legacy import QEMUMonitorProtocol
from qemu.qmp.message import Message
from qemu.qmp.qmp_client import QMPClient

__all__ = ["LOG_LIMIT", "Monitor"]

T = TypeVar("T")
LOG_LIMIT = 2000


def _text(msg: object) -> str:
    text = bytes(msg).decode(errors="replace") if isinstance(msg, Message) else str(msg)
    if len(text) > LOG_LIMIT:
        return f"{text[:LOG_LIMIT]}... ({len(text)} characters)"
    return text


class _Client(QMPClient):
    def _cb_outbound(self, msg: T) -> T:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("--> %s", _text(msg))
        return msg

    def _cb_inbound(self, msg: T) -> T:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("<-- %s", _text(msg))
        return msg


class Monitor(QEMUMonitorProtocol):
    """qemu.qmp.legacy.QEMUMonitorProtocol with the client above (client side
    only: the library's server mode would start on the replaced client)."""

    def __init__(self, address: str | socket.socket, nickname: str | None = None) -> None:
        super().__init__(address, nickname=nickname)
        self._qmp = _Client(nickname)

    def connect(self, negotiate: bool = True, timeout: float | None = None) -> Any:
        """Connect and negotiate; TimeoutError after `timeout` s (None: no limit)."""
        self._qmp.await_greeting = negotiate
        self._qmp.negotiate = negotiate
        self._sync(self._qmp.connect(self._address), timeout)
        return self._get_greeting()

    def close(self, timeout: float | None = 10.0) -> None:
        """Disconnect; TimeoutError after `timeout` s."""
        self._sync(self._qmp.disconnect(), timeout)
