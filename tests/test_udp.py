"""The peer connections' UDP sockets get receive buffers big enough for a busy desktop."""

from __future__ import annotations

import socket

import aioice

from impromptu.rtc import IcePolicy, udp


def _granted(size: int) -> int:
    """What the kernel grants a UDP socket that asks for ``size`` (capped by net.core.rmem_max, reported twice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        plain.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        return plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


async def test_ice_sockets_get_the_bigger_receive_buffer() -> None:
    connection = aioice.Connection(ice_controlling=True)
    try:
        with IcePolicy(addresses=("127.0.0.1",)).gathering():
            await connection.gather_candidates()
        sockets = [protocol.transport.get_extra_info("socket") for protocol in connection._protocols]
        assert sockets
        for sock in sockets:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == _granted(udp.RECEIVE_BUFFER)
    finally:
        await connection.close()
