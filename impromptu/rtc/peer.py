"""One WebRTC peer connection from the desktop to a viewer: the offer, the two DataChannels, and their fate."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from impromptu.rtc.ice import IcePolicy
from impromptu.stats.transport import ice_figures, sctp_totals

logger = logging.getLogger(__name__)

MAX_CONTROL_MESSAGE = 64 * 1024


class ViewerPeer:
    """The desktop's end of one viewer's connection.

    ``on_control(peer, message)`` gets each control message parsed as a JSON object; ``on_open(peer)`` fires once
    both channels are open; ``on_closed(peer)`` fires once when the connection fails or closes, and the owner then
    awaits ``close()`` to release its sockets. ``on_channel(peer, channel)`` gets each channel the viewer opens
    (a file transfer's, protocol.md §9); without it they are closed.
    """

    def __init__(
        self,
        peer_id: str,
        ice: IcePolicy,
        on_open: Callable[[ViewerPeer], None],
        on_control: Callable[[ViewerPeer, dict[str, Any]], None],
        on_closed: Callable[[ViewerPeer], None],
        on_channel: Callable[[ViewerPeer, RTCDataChannel], None] | None = None,
    ) -> None:
        self.id = peer_id
        self._ice = ice
        self._on_open = on_open
        self._on_control = on_control
        self._on_closed = on_closed
        self._pc = RTCPeerConnection(ice.configuration())
        self.video: RTCDataChannel = self._pc.createDataChannel("video", ordered=False, maxRetransmits=0)
        self.control: RTCDataChannel = self._pc.createDataChannel("control", ordered=True)
        self._opened = False
        self._closed = False
        self._settled = asyncio.Event()
        self._drained: dict[Callable[[], None], int] = {}
        """Callbacks waiting for the video channel to drain, with their thresholds: one per hub (surface), as the
        hubs of several surfaces share this one channel and must not overwrite each other's."""
        self.video.on("open", self._check_open)
        self.video.on("bufferedamountlow", self._buffered_amount_low)
        self.control.on("open", self._check_open)
        self.control.on("message", self._control_message)
        self._pc.on("connectionstatechange", self._state_changed)
        self._pc.on("datachannel", self._remote_channel)
        self._on_channel = on_channel
        self.bytes_sent = 0
        """Bytes handed to this viewer's ``video`` and ``control`` channels (statistics, protocol.md §10)."""

    async def settled(self) -> None:
        """Returns once the connection has opened or closed."""
        await self._settled.wait()

    @property
    def is_open(self) -> bool:
        return self._opened and not self._closed

    async def make_offer(self) -> str:
        offer = await self._pc.createOffer()
        with self._ice.gathering():
            await self._pc.setLocalDescription(offer)  # gathers every candidate before returning
        # As sent, and so as MACed: with --ice-public-address, its host candidates advertised there too.
        return self._ice.advertise(str(self._pc.localDescription.sdp))

    async def accept_answer(self, sdp: str) -> None:
        answer = RTCSessionDescription(sdp=self._ice.filter_remote_sdp(sdp), type="answer")
        await self._pc.setRemoteDescription(answer)

    @property
    def buffered_amount(self) -> int:
        return int(self.video.bufferedAmount)

    def send_video(self, message: bytes) -> None:
        # Not once ICE has given up (consent expired): aiortc would only fail to send it, in a task of its own.
        if self.video.readyState == "open" and self._pc.iceConnectionState in ("connected", "completed"):
            self.video.send(message)
            self.bytes_sent += len(message)

    def notify_drained(self, threshold: int, callback: Callable[[], None]) -> None:
        """``callback()`` once the video channel's ``bufferedAmount`` falls to ``threshold`` (then forgotten).

        Several callbacks (one per surface's hub) may wait at once: the channel fires at the lowest threshold, and
        each callback whose own threshold has been reached by then is called."""
        self._drained[callback] = threshold
        self.video.bufferedAmountLowThreshold = min(self._drained.values())

    def _buffered_amount_low(self) -> None:
        if self._closed:
            self._drained.clear()
            return
        buffered = self.buffered_amount
        due = [callback for callback, threshold in self._drained.items() if buffered <= threshold]
        for callback in due:
            del self._drained[callback]
        if self._drained:
            self.video.bufferedAmountLowThreshold = min(self._drained.values())
        for callback in due:
            callback()

    def send_control(self, message: dict[str, Any]) -> None:
        if self.control.readyState != "open":
            return
        try:
            text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
            self.control.send(text)
            self.bytes_sent += len(text.encode())
        except ValueError as exc:  # larger than the page accepts: this message is lost, not the connection
            logger.error("viewer %s: could not send a %s control message: %s", self.id, message.get("type"), exc)

    def ice_figures(self) -> dict[str, Any] | None:
        """The nominated ICE pair as aioice has it (impromptu/stats/transport.py), or ``None`` while there is none."""
        return None if self._closed else ice_figures(self._pc)

    def sctp_totals(self) -> dict[str, Any] | None:
        """The SCTP association's state and loss counters (impromptu/stats/transport.py), or ``None``."""
        return None if self._closed else sctp_totals(self._pc)

    def _check_open(self) -> None:
        if (
            not self._closed
            and not self._opened
            and self.video.readyState == "open"
            and self.control.readyState == "open"
        ):
            self._opened = True
            self._settled.set()
            self._on_open(self)

    def _control_message(self, data: str | bytes) -> None:
        if self._closed:
            return
        if not isinstance(data, str) or len(data) > MAX_CONTROL_MESSAGE:
            logger.warning("viewer %s: dropped a non-text or oversized control message", self.id)
            return
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            logger.warning("viewer %s: dropped a control message that is not JSON", self.id)
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            logger.warning("viewer %s: dropped a control message without a type", self.id)
            return
        try:
            self._on_control(self, message)
        except Exception:
            # Raised into aiortc, an exception would close this viewer's connection: one bad message must cost
            # no more than itself.
            logger.exception("viewer %s: dropped a control message that could not be handled", self.id)

    def _remote_channel(self, channel: RTCDataChannel) -> None:
        if self._closed or self._on_channel is None:
            channel.close()
            return
        try:
            self._on_channel(self, channel)
        except Exception:
            logger.exception("viewer %s: could not take channel %r", self.id, channel.label[:40])
            channel.close()

    def _state_changed(self) -> None:
        state = self._pc.connectionState
        logger.info("viewer %s: connection %s", self.id, state)
        if state in ("failed", "closed"):
            self._mark_closed()  # the owner's on_closed releases the connection with close()

    def _mark_closed(self) -> None:
        if not self._closed:
            self._closed = True
            self._settled.set()
            self._on_closed(self)

    async def close(self) -> None:
        """Close the connection (idempotent); ``on_closed`` fires if it had not yet."""
        self._mark_closed()
        await self._pc.close()
