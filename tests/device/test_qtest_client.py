"""rig.qdev.qtest's protocol client against a scripted peer (no QEMU needed)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from rig.qdev.qtest import QtestClient, QtestError


@pytest.fixture
def peer() -> Iterator[tuple[QtestClient, socket.socket]]:
    ours, theirs = socket.socketpair()
    client = QtestClient(ours, timeout=0.5)
    yield client, theirs
    client.close()
    theirs.close()


def serve(sock: socket.socket, replies: dict[str, bytes], seen: list[str]) -> threading.Thread:
    """Answer each expected line with its canned reply, in a thread."""
    def run() -> None:
        buf = b""
        for _ in range(len(replies)):
            while b"\n" not in buf:
                buf += sock.recv(4096)
            line, _, buf = buf.partition(b"\n")
            seen.append(line.decode())
            sock.sendall(replies[line.decode()])
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_values_and_commands(peer: tuple[QtestClient, socket.socket]) -> None:
    client, theirs = peer
    seen: list[str] = []
    t = serve(theirs, {
        "readl 0xb0000000": b"OK 0x0000000029c08086\n",
        "writew 0x10 0xbeef": b"OK\n",
        "inl 0xcfc": b"IRQ raise 3\nOK 0x1234\n",         # IRQ lines are skipped
        "clock_step 1000": b"OK 2000\n",
        "outb 0x80 0x1": b"OK\n",
        "readq 0x800000000": b"OK 0xffffffffffffffff\n",
    }, seen)
    assert client.readl(0xB000_0000) == 0x29C08086
    client.writew(0x10, 0xBEEF)
    assert client.inl(0xCFC) == 0x1234
    assert client.clock_step(1000) == 2000
    client.outb(0x80, 1)
    assert client.readq(0x8_0000_0000) == (1 << 64) - 1
    t.join(1)
    assert seen[0] == "readl 0xb0000000" and len(seen) == 6


def test_fail_reply_raises(peer: tuple[QtestClient, socket.socket]) -> None:
    client, theirs = peer
    serve(theirs, {"clock_step": b"FAIL cannot advance clock to the next deadline\n"}, [])
    with pytest.raises(QtestError, match="cannot advance clock"):
        client.clock_step()


def test_silence_times_out(peer: tuple[QtestClient, socket.socket]) -> None:
    client, _ = peer
    with pytest.raises(QtestError, match="did not answer"):
        client.readb(0)


def test_closed_peer_raises(peer: tuple[QtestClient, socket.socket]) -> None:
    client, theirs = peer
    theirs.close()
    with pytest.raises(QtestError):
        client.readb(0)


@pytest.mark.parametrize(("method", "args"), [
    ("writeb", (0, 0x100)), ("writel", (0, 1 << 32)), ("writeq", (1 << 64, 0)),
    ("outw", (0x10000, 0)), ("readl", (-1,)),
])
def test_out_of_range_refused_before_sending(peer: tuple[QtestClient, socket.socket],
                                             method: str, args: tuple[int, ...]) -> None:
    client, _ = peer
    with pytest.raises(ValueError):
        getattr(client, method)(*args)
