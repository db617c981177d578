"""Control messages ahead of video on the way out.

aiortc sends every channel's messages through one first-in, first-out queue (``_data_channel_queue``), taken a
message at a time once the previous one is in flight. When the path is slower than the stream, video piles up
there — up to the backlog limit of protocol.md §6, a megabyte — and a control message (a `config`, `presence`,
the once-a-second `diagnosis`) waits behind all of it: through a user-space relay with 150 ms delay and 5 % loss
each way, where SCTP carried 60–180 kbit/s of a 1.8 Mbit/s stream, `diagnosis` messages reached the page 13 s
apart and 40 s late (tests/test_diagnosis_browser.py). A message on a channel labelled ``control`` is instead put
behind the control messages already queued but ahead of everything else. Each channel keeps its own order (SCTP
orders per stream, and video and control are different streams), so nothing reaches a page out of order; a
control message now waits at most for the one message already in flight.

Installed by wrapping ``RTCSctpTransport._data_channel_send``, through which every message goes.
"""

from __future__ import annotations

from typing import Any

from aiortc.rtcsctptransport import RTCSctpTransport

PRIORITY_LABELS = frozenset({"control"})
"""Channels whose messages go ahead of the others'."""

_original = RTCSctpTransport._data_channel_send


def _data_channel_send(self: Any, channel: Any, data: bytes | str) -> None:
    _original(self, channel, data)
    if channel.label not in PRIORITY_LABELS:
        return
    queue = self._data_channel_queue
    if len(queue) < 2:
        return
    item = queue.pop()  # the message just queued
    ahead = 0
    while ahead < len(queue) and queue[ahead][0].label in PRIORITY_LABELS:
        ahead += 1
    queue.insert(ahead, item)


RTCSctpTransport._data_channel_send = _data_channel_send  # type: ignore[method-assign]
