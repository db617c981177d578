"""The UDP sockets of peer connections: bigger receive buffers for a desktop that serves many viewers.

Every viewer's SCTP acknowledgements and ICE consent checks arrive on that viewer's own socket. When the desktop
is busy (many viewers on few cores), a default-sized receive buffer (208 KiB) overflows, consent responses are
lost with the rest, and some 30 s later ICE declares a healthy viewer gone. The buffer is raised to
``RECEIVE_BUFFER``; the kernel caps it at ``net.core.rmem_max``.

Installed by wrapping ``aioice.ice.StunProtocol.connection_made``, which every ICE socket goes through.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import aioice.ice

logger = logging.getLogger(__name__)

RECEIVE_BUFFER = 1024 * 1024

_original_connection_made = aioice.ice.StunProtocol.connection_made


def _connection_made(self: aioice.ice.StunProtocol, transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError as exc:  # not fatal: the default buffer still works, with less slack
            logger.debug("could not raise the UDP receive buffer: %s", exc)
    _original_connection_made(self, transport)


aioice.ice.StunProtocol.connection_made = _connection_made  # type: ignore[method-assign]
