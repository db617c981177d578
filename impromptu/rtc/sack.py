"""Delayed SCTP acknowledgements on the receiving side, as browsers send them.

aiortc acknowledges every packet that carries DATA with a SACK of its own. RFC 9260 §6.2 asks a receiver to
acknowledge at least every second packet and within 200 ms, and at once when it sees a gap or a duplicate; that is
what Chromium's SCTP stack does. A headless viewer (``impromptu probe``, the Python relay) that SACKs every packet
makes the desktop handle twice the acknowledgements a browser would — at 8 Mbit/s, some 700 a second per viewer,
each processed in Python. ``delay_acks(transport)`` makes one association acknowledge like a browser; headless
viewers call it on theirs (the desktop's own associations keep aiortc's behaviour).
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

from aiortc.rtcsctptransport import RTCSctpTransport

PACKETS_PER_SACK = 2
MAX_DELAY_S = 0.2

_send_sack_now = RTCSctpTransport._send_sack


def delay_acks(transport: RTCSctpTransport) -> None:
    """Make this association acknowledge every second packet, at once on a gap, and within ``MAX_DELAY_S``."""
    transport._send_sack = types.MethodType(_send_sack, transport)  # type: ignore[method-assign]


async def _send_sack(self: Any) -> None:
    """Called by aiortc after each packet that needs acknowledging."""
    self._impromptu_unacked = getattr(self, "_impromptu_unacked", 0) + 1
    if self._impromptu_unacked >= PACKETS_PER_SACK or self._sack_misordered or self._sack_duplicates:
        await _flush(self)
    elif getattr(self, "_impromptu_sack_timer", None) is None:
        loop = asyncio.get_running_loop()
        self._impromptu_sack_timer = loop.call_later(MAX_DELAY_S, _on_timer, self)


async def _flush(self: Any) -> None:
    timer = getattr(self, "_impromptu_sack_timer", None)
    if timer is not None:
        timer.cancel()
        self._impromptu_sack_timer = None
    self._impromptu_unacked = 0
    if self._sack_needed and self._association_state == RTCSctpTransport.State.ESTABLISHED:
        await _send_sack_now(self)


def _on_timer(self: Any) -> None:
    self._impromptu_sack_timer = None
    task = asyncio.ensure_future(_flush(self))
    _pending.add(task)
    task.add_done_callback(_settled)


def _settled(task: asyncio.Future[None]) -> None:
    _pending.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a connection that went away meanwhile has nothing left to acknowledge


_pending: set[asyncio.Future[None]] = set()
