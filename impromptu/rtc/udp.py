"""The UDP sockets of peer connections: bigger receive buffers for a desktop that serves many viewers.

Every viewer's SCTP acknowledgements and ICE consent checks arrive on that viewer's own socket. When the desktop
is busy (many viewers on few cores), a default-sized receive buffer (208 KiB) overflows, consent responses are
lost with the rest, and some 30 s later ICE declares a healthy viewer gone. The buffer is raised to
``RECEIVE_BUFFER``; the kernel caps it at ``net.core.rmem_max``.

aioice sets every ICE socket's buffer to ``aioice.turn.UDP_SOCKET_BUFFER_SIZE`` (256 KiB) once it is made, reading
that module constant at each call: raising the constant is the one place to do it (an earlier version set the
buffer in ``StunProtocol.connection_made``, which aioice then overwrote).
"""

from __future__ import annotations

import aioice.turn

RECEIVE_BUFFER = 1024 * 1024

aioice.turn.UDP_SOCKET_BUFFER_SIZE = max(aioice.turn.UDP_SOCKET_BUFFER_SIZE, RECEIVE_BUFFER)
