"""A viewer's end of the protocol, headless (aiortc): join the room over signaling, check the desktop's offer,
answer it MACed with the link's key, and hand on what arrives on the ``video`` and ``control`` channels.

Used by ``impromptu probe`` and by tests; a page does the same in JavaScript (web/lib/peer.js).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from impromptu.errors import ImpromptuError
from impromptu.link import ViewerLink
from impromptu.rtc.ice import IcePolicy
from impromptu.rtc.sack import delay_acks

logger = logging.getLogger(__name__)

SIGNAL_TIMEOUT_S = 15.0


class DesktopConnection:
    """One connection to the desktop behind ``link``.

    ``on_video(message)`` gets each binary message of the ``video`` channel, ``on_control(message)`` each control
    message parsed as a JSON object. After ``connect()`` returns both channels are open; ``closed`` is set when
    the connection ends for any reason.
    """

    def __init__(
        self,
        link: ViewerLink,
        ice: IcePolicy,
        on_video: Callable[[bytes], None],
        on_control: Callable[[dict[str, Any]], None],
        ssl_context: ssl.SSLContext | aiohttp.Fingerprint | None = None,
    ) -> None:
        self.link = link
        self._ice = ice
        self._on_video = on_video
        self._on_control = on_control
        self._ssl = ssl_context
        self.peer_id = ""
        self.pc = RTCPeerConnection(ice.configuration())
        self._control: RTCDataChannel | None = None
        self._channels: set[str] = set()
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._listener: asyncio.Task[None] | None = None
        self.pc.on("datachannel", self._channel)
        self.pc.on("connectionstatechange", self._state_changed)

    async def connect(self, within: float = SIGNAL_TIMEOUT_S) -> None:
        """Join, answer the offer and wait for both channels; ``ImpromptuError`` says why it could not."""
        try:
            await asyncio.wait_for(self._connect(), within)
        except TimeoutError:
            raise ImpromptuError(
                f"no connection to the desktop at {self.link.base_url} within {within:.0f} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise ImpromptuError(f"cannot reach {self.link.base_url}: {exc}") from None

    async def _connect(self) -> None:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(
            f"{self.link.base_url}/ws", ssl=True if self._ssl is None else self._ssl, max_msg_size=64 * 1024
        )
        await self._ws.send_json({"type": "hello", "room": self.link.room, "role": "viewer"})
        # The socket stays open for as long as the connection (the desktop sees a `leave` when it closes); until
        # both channels are open, a `reject` (of our answer, say) or a connection that fails ends the wait.
        self._listener = asyncio.ensure_future(self._signals())
        opened = asyncio.ensure_future(self.opened.wait())
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait({self._listener, opened, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            opened.cancel()
            closed.cancel()
        if self.opened.is_set():
            return
        if self._listener.done() and self._listener.exception() is not None:
            raise self._listener.exception()  # type: ignore[misc]
        raise ImpromptuError("the connection to the desktop failed before its channels opened")

    async def _signals(self) -> None:
        while True:
            message = await self._receive()
            kind = message.get("type")
            if kind == "welcome":
                self.peer_id = str(message.get("peer", ""))
            elif kind == "offer" and not self.opened.is_set():
                await self._answer(str(message.get("sdp", "")), str(message.get("mac", "")))
            elif kind == "reject":
                raise ImpromptuError(f"the desktop refused this viewer: {message.get('reason', 'no reason given')}")
            elif kind in ("waiting", "desktop-gone"):
                logger.info("waiting for the desktop to join")

    async def _receive(self) -> dict[str, Any]:
        assert self._ws is not None
        msg = await self._ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ImpromptuError(f"the signaling server at {self.link.base_url} closed the connection")
        try:
            data = json.loads(msg.data)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ImpromptuError("the signaling server sent something that is not a JSON object")
        return data

    async def _answer(self, sdp: str, mac: str) -> None:
        if not self.peer_id or not self.link.check_offer(self.peer_id, sdp, mac):
            raise ImpromptuError("the offer did not come from the desktop (its MAC does not match the link's key)")
        await self.pc.setRemoteDescription(RTCSessionDescription(self._ice.filter_remote_sdp(sdp), "offer"))
        if self.pc.sctp is not None:
            delay_acks(self.pc.sctp)
        answer = await self.pc.createAnswer()
        with self._ice.gathering():
            await self.pc.setLocalDescription(answer)
        local = str(self.pc.localDescription.sdp)
        assert self._ws is not None
        await self._ws.send_json({"type": "answer", "sdp": local, "mac": self.link.answer_mac(self.peer_id, local)})

    def _channel(self, channel: RTCDataChannel) -> None:
        if channel.label == "video":
            channel.on("message", self._video_message)
        elif channel.label == "control":
            self._control = channel
            channel.on("message", self._control_message)
        else:
            logger.warning("ignoring an unknown data channel %r", channel.label[:40])
            return
        self._channels.add(channel.label)
        if self._channels == {"video", "control"}:
            self.opened.set()

    def _video_message(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self._on_video(data)

    def _control_message(self, data: str | bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            logger.warning("dropped a control message that is not JSON")
            return
        if isinstance(message, dict) and isinstance(message.get("type"), str):
            self._on_control(message)

    def send_control(self, message: dict[str, Any]) -> None:
        if self._control is not None and self._control.readyState == "open":
            self._control.send(json.dumps(message, separators=(",", ":")))

    def _state_changed(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.closed.set()

    async def close(self) -> None:
        try:
            if self._listener is not None:
                self._listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):  # its failure was reported already
                    await self._listener
            await self.pc.close()
        finally:
            self.closed.set()
            if self._http is not None:
                await self._http.close()
