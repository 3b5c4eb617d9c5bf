"""The QMP client the rig uses: qemu.qmp's synchronous one, minus a slow log.

qemu.qmp 0.0.6 formats every message it sends or receives as indented JSON
for its debug log, whether or not that log is enabled. For a reply of 4096
hint records (460 KB of JSON) that formatting took twice as long as QEMU's
answer itself. The client below formats only when the debug log is on,
through the hooks qemu.qmp provides for subclasses (_cb_inbound and
_cb_outbound, as its own qmp_tui does).
"""

from __future__ import annotations

import logging
import socket
from typing import TypeVar

from qemu.qmp.legacy import QEMUMonitorProtocol
from qemu.qmp.qmp_client import QMPClient

__all__ = ["Monitor"]

T = TypeVar("T")


class _Client(QMPClient):
    def _cb_outbound(self, msg: T) -> T:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("--> %s", str(msg))
        return msg

    def _cb_inbound(self, msg: T) -> T:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("<-- %s", str(msg))
        return msg


class Monitor(QEMUMonitorProtocol):
    """qemu.qmp.legacy.QEMUMonitorProtocol with the client above (client side
    only: the library's server mode would start on the replaced client)."""

    def __init__(self, address: str | socket.socket, nickname: str | None = None) -> None:
        super().__init__(address, nickname=nickname)
        self._qmp = _Client(nickname)
