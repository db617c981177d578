"""The peer connections' UDP sockets get receive buffers big enough for a busy desktop."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aioice.ice

from impromptu.rtc import udp


class Receiver:
    def protocol_lost(self, protocol: Any) -> None:
        pass


class RecordingSocket:
    def __init__(self) -> None:
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))


class Transport(asyncio.DatagramTransport):
    def __init__(self, sock: Any) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default


async def test_ice_sockets_ask_for_a_bigger_receive_buffer() -> None:
    sock = RecordingSocket()
    protocol = aioice.ice.StunProtocol(Receiver())  # type: ignore[arg-type]  # as aioice makes them
    protocol.connection_made(Transport(sock))
    assert sock.options == [(socket.SOL_SOCKET, socket.SO_RCVBUF, udp.RECEIVE_BUFFER)]


async def test_a_real_socket_gets_it() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: aioice.ice.StunProtocol(Receiver()),  # type: ignore[arg-type]
        local_addr=("127.0.0.1", 0),
    )
    try:
        plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        default = plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        plain.close()
        got = transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert got >= default  # more where net.core.rmem_max allows (Linux reports twice what was set)
    finally:
        transport.close()
