"""A viewer's end of the protocol, headless (aiortc): join the room over signaling, check the offer of whoever
serves us (the desktop or a relay), answer it MACed with the right key, and hand on what arrives on the ``video``
and ``control`` channels.

Used by ``impromptu probe``, by the Python relay for its own upstream, and by tests; a page does the same in
JavaScript (web/lib/peer.js).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from impromptu.errors import ImpromptuError
from impromptu.link import LinkKeys, ViewerLink
from impromptu.rtc.ice import IcePolicy
from impromptu.rtc.sack import delay_acks

logger = logging.getLogger(__name__)

SIGNAL_TIMEOUT_S = 15.0
MAX_SIGNAL_MESSAGE = 64 * 1024


def _ignore() -> None:
    pass


class Rejected(ImpromptuError):
    """The desktop (or the relay that offered) refused this viewer; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the desktop refused this viewer: {reason or 'no reason given'}")
        self.reason = reason


class DesktopConnection:
    """One viewer's connection to the desktop behind ``link`` (directly, or through a relay).

    ``on_video(message)`` gets each binary message of the ``video`` channel, ``on_control(message)`` each control
    message parsed as a JSON object. After ``connect()`` returns both channels are open.

    By default the first offer makes the one connection: ``closed`` is set when it ends for any reason, and later
    offers are ignored. With ``follow_offers`` (a relay's upstream) every fresh offer on the signaling socket — the
    server moved us to another upstream (docs/protocol.md §7) — replaces the connection; ``on_open()`` fires each
    time a connection's channels are both open and ``on_lost()`` when an answered connection ends or is replaced,
    and ``closed`` is set only when the signaling socket ends (``error`` says why). Signaling messages this class
    does not handle itself (a relay's ``join``, ``answer``, ``leave``) go to ``on_signal(message)``.
    """

    def __init__(
        self,
        link: ViewerLink,
        ice: IcePolicy,
        on_video: Callable[[bytes], None],
        on_control: Callable[[dict[str, Any]], None],
        ssl_context: ssl.SSLContext | aiohttp.Fingerprint | None = None,
        *,
        role: str = "viewer",
        follow_offers: bool = False,
        on_signal: Callable[[dict[str, Any]], None] | None = None,
        on_open: Callable[[], None] = _ignore,
        on_lost: Callable[[], None] = _ignore,
    ) -> None:
        self.link = link
        self._ice = ice
        self._on_video = on_video
        self._on_control = on_control
        self._ssl = ssl_context
        self._role = role
        self._follow = follow_offers
        self._on_signal = on_signal
        self._on_open = on_open
        self._on_lost = on_lost
        self.peer_id = ""
        self.pc = self._new_pc()
        self.via_relay = False
        """Whether the current connection's offer came from a relay (so our answer is MACed with ``Kv``)."""
        self.offers = 0
        """Offers answered on this socket."""
        self.waiting = False
        """Whether the server last said we wait for an upstream (no desktop, or no room): it will send an offer."""
        self._answered = False
        """Whether the current peer connection has answered an offer (a fresh offer then needs a new one)."""
        self._ended = False
        """Whether the current peer connection has failed or closed (and ``on_lost`` fired for it)."""
        self._open = False
        self._control: RTCDataChannel | None = None
        self._channels: set[str] = set()
        self.opened = asyncio.Event()
        """Set when the first connection's channels are both open."""
        self.closed = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._listener: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(self._ice.configuration())
        pc.on("datachannel", functools.partial(self._channel, pc))
        pc.on("connectionstatechange", functools.partial(self._state_changed, pc))
        return pc

    @property
    def is_open(self) -> bool:
        """Whether the current connection's channels are both open."""
        return self._open

    @property
    def error(self) -> BaseException | None:
        """Why the signaling socket ended, once it has (``None`` while it runs or after ``close()``)."""
        if self._listener is None or not self._listener.done() or self._listener.cancelled():
            return None
        return self._listener.exception()

    async def connect(self, within: float = SIGNAL_TIMEOUT_S) -> None:
        """Join, answer the offer and wait for both channels; ``ImpromptuError`` says why it could not."""
        try:
            await asyncio.wait_for(self._connect(), within)
        except TimeoutError:
            raise ImpromptuError(
                f"no connection to the desktop at {self.link.base_url} within {within:.0f} s"
            ) from None

    async def start(self) -> None:
        """Open the signaling socket and join the room; offers are answered as they come."""
        if self._http is not None:
            raise ImpromptuError("a desktop connection can only be started once")
        self._http = aiohttp.ClientSession()
        try:
            self._ws = await self._http.ws_connect(
                f"{self.link.base_url}/ws",
                ssl=True if self._ssl is None else self._ssl,
                max_msg_size=MAX_SIGNAL_MESSAGE,
            )
            await self._ws.send_json({"type": "hello", "room": self.link.room, "role": self._role})
        except aiohttp.ClientError as exc:
            raise ImpromptuError(f"cannot reach {self.link.base_url}: {exc}") from None
        # The socket stays open for as long as the connection (the desktop sees a `leave` when it closes).
        self._listener = asyncio.ensure_future(self._signals())
        self._listener.add_done_callback(self._signaling_ended)
        self._writer = asyncio.ensure_future(self._write())

    async def _connect(self) -> None:
        await self.start()
        assert self._listener is not None
        # Until both channels are open, a `reject` (of our answer, say) or a connection that fails ends the wait.
        opened = asyncio.ensure_future(self.opened.wait())
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait({self._listener, opened, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            opened.cancel()
            closed.cancel()
        if self.opened.is_set():
            return
        if self.error is not None:
            raise self.error
        raise ImpromptuError("the connection to the desktop failed before its channels opened")

    def _signaling_ended(self, task: asyncio.Task[None]) -> None:
        if self._follow:
            self.closed.set()

    async def _signals(self) -> None:
        while True:
            message = await self._receive()
            kind = message.get("type")
            if kind == "welcome":
                self.peer_id = str(message.get("peer", ""))
            elif kind == "offer":
                sdp, mac = str(message.get("sdp", "")), str(message.get("mac", ""))
                if self._follow and self._answered:
                    if not self.link.check_offer(self.peer_id, sdp, mac):
                        # Not from anyone holding the link: the connection we have stays.
                        logger.warning("ignored an offer whose MAC does not match the link's key")
                        continue
                    await self._replace()
                self.waiting = False
                if not self._answered:
                    await self._answer(sdp, mac, message.get("relay") is True)
            elif kind == "reject":
                raise Rejected(str(message.get("reason", "")))
            elif kind in ("waiting", "desktop-gone"):
                if self._follow and self._answered:
                    await self._replace()  # whatever is left of the old connection goes (§7)
                self.waiting = True
                why = " (every place is taken)" if message.get("reason") == "full" else ""
                logger.info("waiting for the desktop%s", why)
            elif self._on_signal is not None:
                self._on_signal(message)

    async def _receive(self) -> dict[str, Any]:
        assert self._ws is not None
        msg = await self._ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ImpromptuError(f"the signaling server at {self.link.base_url} closed the connection")
        try:
            data = json.loads(msg.data)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise ImpromptuError("the signaling server sent something that is not a JSON object")
        return data

    def send_signal(self, message: dict[str, Any]) -> None:
        """Send ``message`` on the signaling socket (in order; dropped once the socket is gone)."""
        if self._writer is not None and not self._writer.done():
            self._outbox.put_nowait(message)

    async def _write(self) -> None:
        while True:
            message = await self._outbox.get()
            if self._ws is None or self._ws.closed:
                continue
            try:
                await self._ws.send_str(json.dumps(message, separators=(",", ":")))
            except (ConnectionError, RuntimeError) as exc:  # the socket is closing: the listener says so
                logger.debug("signaling: could not send %s: %s", message.get("type"), exc)

    async def _replace(self) -> None:
        """A fresh offer on the same socket: the server gave us another upstream. The old connection goes."""
        old, report = self.pc, self._answered and not self._ended
        self.pc = self._new_pc()
        self._answered = False
        self._ended = False
        self._open = False
        self._control = None
        self._channels = set()
        if report:
            self._on_lost()
        await old.close()

    async def _answer(self, sdp: str, mac: str, relayed: bool) -> None:
        if not self.peer_id or not self.link.check_offer(self.peer_id, sdp, mac):
            raise ImpromptuError("the offer did not come from the desktop (its MAC does not match the link's key)")
        pc = self.pc
        self._answered = True
        self.via_relay = relayed
        self.offers += 1
        await pc.setRemoteDescription(RTCSessionDescription(self._ice.filter_remote_sdp(sdp), "offer"))
        if pc.sctp is not None:
            delay_acks(pc.sctp)
        answer = await pc.createAnswer()
        with self._ice.gathering():
            await pc.setLocalDescription(answer)
        local = str(pc.localDescription.sdp)
        # A relay may hold only Kv, so an answer to a relay's offer is MACed with Kv: our role is the desktop's
        # business, proved to it end to end (docs/protocol.md §7).
        key = self.link.view_key if relayed else self.link.key
        self.send_signal({"type": "answer", "sdp": local, "mac": LinkKeys.answer_mac(key, self.peer_id, local)})

    def _channel(self, pc: RTCPeerConnection, channel: RTCDataChannel) -> None:
        if pc is not self.pc:
            return
        if channel.label == "video":
            channel.on("message", functools.partial(self._video_message, pc))
        elif channel.label == "control":
            self._control = channel
            channel.on("message", functools.partial(self._control_message, pc))
        else:
            logger.warning("ignoring an unknown data channel %r", channel.label[:40])
            return
        self._channels.add(channel.label)
        if self._channels == {"video", "control"} and not self._open:
            self._open = True
            self.opened.set()
            self._on_open()

    def _video_message(self, pc: RTCPeerConnection, data: str | bytes) -> None:
        if isinstance(data, bytes) and pc is self.pc:
            self._on_video(data)

    def _control_message(self, pc: RTCPeerConnection, data: str | bytes) -> None:
        if pc is not self.pc:
            return
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            logger.warning("dropped a control message that is not JSON")
            return
        if isinstance(message, dict) and isinstance(message.get("type"), str):
            try:
                self._on_control(message)
            except Exception:
                # Raised into aiortc, it would close the connection: one bad message costs only itself.
                logger.exception("dropped a control message that could not be handled")

    def send_control(self, message: dict[str, Any]) -> None:
        if self._control is not None and self._control.readyState == "open":
            self._control.send(json.dumps(message, separators=(",", ":")))

    def _state_changed(self, pc: RTCPeerConnection) -> None:
        if pc is not self.pc or pc.connectionState not in ("failed", "closed"):
            return
        if not self._follow:
            self.closed.set()
        elif self._answered and not self._ended:
            self._ended = True
            self._open = False
            self._on_lost()

    async def close(self) -> None:
        """Close the connection and the signaling socket (idempotent). ``on_lost`` does not fire for it."""
        self._on_lost = _ignore
        self._on_open = _ignore
        self._on_signal = None
        try:
            for task in (self._listener, self._writer):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):  # its failure was reported already
                        await task
            await self.pc.close()
        finally:
            self.closed.set()
            if self._ws is not None:
                await self._ws.close()  # before its session: else aiohttp warns of an unclosed connection
            if self._http is not None:
                await self._http.close()
