"""The receiving side of aiortc's SCTP, made cheaper where bulk data shows its cost: delayed acknowledgements, as
browsers send them, and a reassembly that does not rescan a message's fragments at every packet.

**Delayed acknowledgements.** aiortc acknowledges every packet that carries DATA with a SACK of its own. RFC 9260
§6.2 asks a receiver to acknowledge at least every second packet and within 200 ms, and at once when it sees a gap
or a duplicate; that is what Chromium's SCTP stack does. A headless viewer (``impromptu probe``, the Python relay)
that SACKs every packet makes the desktop handle twice the acknowledgements a browser would — at 8 Mbit/s, some
700 a second per viewer, each processed in Python. ``delay_acks(transport)`` makes one association acknowledge
like a browser; headless viewers call it on theirs, and both ends of a file transfer on the association that
carries it (impromptu.files.wire). On an upload to the desktop the sender otherwise drowns in SACKs: with 1 GiB sent
by ``impromptu send`` on loopback (bench/files.py --baseline, 2 cores), 110 000 datagrams were dropped, only 1 300
of them by the desktop — the rest were SACKs the sending process could not read in time — and the transfer ran at
185 Mbit/s; acknowledging every second packet (and the reassembly below) made it 234 Mbit/s. A page's upload
did not change (128 Mbit/s either way): Chromium's side is the limit there.

**Reassembly.** aiortc files each DATA chunk in its stream's reassembly list and then scans that list from its
start for complete messages (``InboundStream.pop_messages``). A 64 KiB message arrives as 56 chunks, so its last
chunk is reached after 1 + 2 + … + 56 steps: 15 % of a desktop's CPU while it receives an upload (cProfile). A
chunk that lands at the end of the list (the usual, in-order case) and does not end a message cannot complete one
— any message it does not belong to was complete, and taken, before it came — so the scan is skipped for it.
Installed for every association on import (``InboundStream`` is aiortc's, one per stream). Alone, on the receiving
end of ``impromptu fetch`` (which already acknowledged every second packet), it took 1 GiB from 216 to 242 Mbit/s.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from typing import Any

from aiortc.rtcsctptransport import SCTP_DATA_LAST_FRAG, DataChunk, InboundStream, RTCSctpTransport
from aiortc.utils import uint32_gt

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


# ---- reassembly ----

_add_chunk = InboundStream.add_chunk
_pop_messages = InboundStream.pop_messages


def _add_chunk_noting_tail(self: InboundStream, chunk: DataChunk) -> None:
    # Before aiortc files it: does it go at the end of the list, without ending a message?
    self._impromptu_nothing_complete = not chunk.flags & SCTP_DATA_LAST_FRAG and (  # type: ignore[attr-defined]
        not self.reassembly or uint32_gt(chunk.tsn, self.reassembly[-1].tsn)
    )
    _add_chunk(self, chunk)


def _pop_messages_unless_none(self: InboundStream) -> Iterator[tuple[int, int, bytes]]:
    if getattr(self, "_impromptu_nothing_complete", False):
        self._impromptu_nothing_complete = False  # type: ignore[attr-defined]
        return iter(())
    return _pop_messages(self)


InboundStream.add_chunk = _add_chunk_noting_tail  # type: ignore[method-assign]
InboundStream.pop_messages = _pop_messages_unless_none  # type: ignore[method-assign]
