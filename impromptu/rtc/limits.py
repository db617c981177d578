"""A bound on what a peer can make aiortc hold for reassembly.

aiortc announces the largest message it accepts (``a=max-message-size``, 256 KiB) but never enforces it on
receipt: a peer that ignores it (or the receive window) can send one message of any size, which aiortc assembles
in memory before anything of ours sees it — a 200 MB message took a desktop from 330 to 774 MB. Honest senders
(browsers, aiortc itself) keep to the announced size and the window, so a stream holding more than
``MAX_REASSEMBLY`` bytes of unassembled data is a peer misbehaving: the association is aborted, as a browser's
SCTP stack does with an oversized message.

Installed by wrapping ``RTCSctpTransport._receive_data_chunk``, through which every DATA chunk passes.
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc.rtcsctptransport import LOCAL_MAX_MESSAGE_SIZE, RTCSctpTransport

logger = logging.getLogger(__name__)

MAX_REASSEMBLY = 4 * 1024 * 1024
"""Bytes one stream may hold unassembled: far more than the announced maximum message, and than the receive window
lets honest senders have in flight."""

_CHECK_FROM_CHUNKS = LOCAL_MAX_MESSAGE_SIZE // 1200
"""Below this many chunks a stream cannot hold too much (a chunk carries at most a packet): no sum to make."""

_original = RTCSctpTransport._receive_data_chunk


async def _receive_data_chunk(self: Any, chunk: Any) -> None:
    stream = self._inbound_streams.get(chunk.stream_id)
    if stream is not None and len(stream.reassembly) >= _CHECK_FROM_CHUNKS:
        held = sum(len(c.user_data) for c in stream.reassembly) + len(chunk.user_data)
        if held > MAX_REASSEMBLY:
            logger.warning("a peer sent a message over %d bytes: its connection is aborted", MAX_REASSEMBLY)
            self._inbound_streams.clear()
            await self._abort()
            self._set_state(RTCSctpTransport.State.CLOSED)
            return
    await _original(self, chunk)


RTCSctpTransport._receive_data_chunk = _receive_data_chunk  # type: ignore[method-assign]
