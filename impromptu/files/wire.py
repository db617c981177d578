"""What both ends of a ``file`` channel share (protocol.md §9): sizes, message parsing, pacing and closing.

A channel is an aiortc ``RTCDataChannel``; its callbacks become an async stream of messages (``ChannelReader``) so a
transfer is written as one coroutine, on the desktop and in ``impromptu send``/``fetch`` alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiortc import RTCDataChannel

from impromptu.errors import ProtocolError
from impromptu.rtc.sack import delay_acks

__all__ = [
    "CHUNK",
    "LABEL",
    "MAX_REASON",
    "ChannelClosed",
    "ChannelReader",
    "close_when_sent",
    "refuse",
    "send_json",
    "send_paced",
]

LABEL = "file"
"""The label of a transfer's channel."""

CHUNK = 65536
"""Largest binary message: the largest every WebRTC stack accepts by default (aiortc announces 256 KiB)."""

MAX_TEXT = 4096
"""Largest text message: requests and answers are small JSON objects."""

MAX_REASON = 200
"""Longest ``reason`` of an ``error``."""

HIGH_WATER = 1 << 20
"""A sender waits while more than this many bytes are queued on the channel (``bufferedAmount``)."""

LOW_WATER = 256 << 10
"""…and goes on once the queue has fallen to this."""

MAX_QUEUED = 16 << 20
"""Most bytes a reader holds unread: a sender that outruns the disk, or sends where nothing is read (a download
channel), past this has its channel closed (an upload stays resumable)."""

CLOSE_TIMEOUT_S = 30.0
"""How long closing waits for queued data to leave."""


class ChannelClosed(Exception):
    """The channel closed before the transfer was over."""


class ChannelReader:
    """The messages of ``channel``, in order, as ``await next()``: ``bytes`` for binary ones, a JSON object
    (``dict``) for text ones. A text message that is not a JSON object with a string ``type``, or too long, raises
    ``ProtocolError``; the channel closing raises ``ChannelClosed`` once what came before it has been read."""

    def __init__(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        # A transfer is bulk data: its association acknowledges every second packet, as browsers do, rather than
        # every packet as aiortc does (impromptu.rtc.sack), which halves the SACKs both ends handle in Python.
        delay_acks(channel.transport)
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._queued = 0
        """Bytes received and not yet read: past ``MAX_QUEUED`` the other side is sending what nobody reads."""
        channel.on("message", self._received)
        channel.on("close", lambda: self._queue.put_nowait(None))
        if channel.readyState == "closed":
            self._queue.put_nowait(None)

    def _received(self, data: str | bytes) -> None:
        if self._queued < 0:
            return  # overflowed: the channel is closing
        self._queued += len(data)
        if self._queued > MAX_QUEUED:
            self._queued = -1
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)
            self.channel.close()
            return
        self._queue.put_nowait(data)

    async def next(self, timeout_s: float | None = None) -> bytes | dict[str, Any]:
        """The next message; ``ChannelClosed`` if the channel closed, or nothing came for ``timeout_s``."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout_s)
        except TimeoutError:
            self.channel.close()
            raise ChannelClosed() from None
        if item is None:
            self._queue.put_nowait(None)  # every later call says so too
            raise ChannelClosed()
        self._queued = max(0, self._queued - len(item)) if self._queued >= 0 else self._queued
        if isinstance(item, bytes):
            return item
        return parse_text(item)

    async def next_text(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The next message, which must be a text one."""
        message = await self.next(timeout_s)
        if isinstance(message, bytes):
            raise ProtocolError("expected a JSON message, got file data")
        return message


def parse_text(text: str) -> dict[str, Any]:
    if len(text) > MAX_TEXT:
        raise ProtocolError("a message on the file channel is too long")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("a message on the file channel is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("a message on the file channel has no type")
    return message


def send_json(channel: RTCDataChannel, message: dict[str, Any]) -> None:
    if channel.readyState != "open":
        raise ChannelClosed()
    channel.send(json.dumps(message, separators=(",", ":")))


async def send_paced(channel: RTCDataChannel, data: bytes) -> None:
    """Send ``data`` (at most ``CHUNK`` bytes), first waiting while the channel has more than ``HIGH_WATER`` bytes
    queued: memory stays bounded however fast the file is read."""
    if channel.bufferedAmount > HIGH_WATER:
        await _drained_to(channel, LOW_WATER)
    if channel.readyState != "open":
        raise ChannelClosed()
    channel.send(data)


async def close_when_sent(channel: RTCDataChannel) -> None:
    """Close ``channel`` once everything queued on it has been handed to SCTP (aiortc resets the stream right
    away, and data still queued behind the reset would be lost), or after ``CLOSE_TIMEOUT_S``."""
    with contextlib.suppress(TimeoutError, ChannelClosed):
        await asyncio.wait_for(_drained_to(channel, 0), CLOSE_TIMEOUT_S)
    channel.close()


async def refuse(channel: RTCDataChannel, reason: str) -> None:
    """Answer a channel's request with ``error`` and close it."""
    with contextlib.suppress(ChannelClosed):
        send_json(channel, {"type": "error", "reason": reason[:MAX_REASON]})
    await close_when_sent(channel)


async def _drained_to(channel: RTCDataChannel, threshold: int) -> None:
    if channel.bufferedAmount <= threshold:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    channel.bufferedAmountLowThreshold = threshold
    channel.on("bufferedamountlow", settle)
    channel.on("close", settle)
    try:
        while channel.bufferedAmount > threshold and channel.readyState == "open":
            await done
            done = loop.create_future()
    finally:
        channel.remove_listener("bufferedamountlow", settle)
        channel.remove_listener("close", settle)
    if channel.readyState != "open":
        raise ChannelClosed()
