"""The peer connections' UDP sockets get receive buffers big enough for a busy desktop."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aioice.ice

from impromptu.rtc import udp

RMEM_MAX = int(Path("/proc/sys/net/core/rmem_max").read_text())


class Receiver:
    def protocol_lost(self, protocol: Any) -> None:
        pass


async def test_ice_sockets_get_a_bigger_receive_buffer() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: aioice.ice.StunProtocol(Receiver()),  # type: ignore[arg-type]  # as aioice makes them
        local_addr=("127.0.0.1", 0),
    )
    try:
        sock = transport.get_extra_info("socket")
        # Linux reports twice what was set (it counts its own bookkeeping), capped at rmem_max.
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= min(udp.RECEIVE_BUFFER, RMEM_MAX)
    finally:
        transport.close()
