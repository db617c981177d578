"""A minimal headless viewer in Python (aiortc), speaking docs/protocol.md, for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from impromptu import envelope
from impromptu.control import ControlMode
from impromptu.display import WindowInfo
from impromptu.files.folder import TransferFolder
from impromptu.link import LinkKeys
from impromptu.rtc import IcePolicy
from impromptu.session import MAX_PEERS, ShareOptions, ShareSession
from impromptu.signaling import SignalingServer
from impromptu.stream.framing import HEADER, HEADER_SIZE, EncodedChunk, Reassembler

LOOPBACK = IcePolicy(addresses=("127.0.0.1",))


class PyViewer:
    """A viewer of the desktop, directly or behind a relay (docs/protocol.md §7).

    It keeps its signaling socket open after ``connect()``: a fresh offer on it (the server moved it to another
    upstream) replaces the connection, as a page does. ``via_relay`` says whether the current offer came from a
    relay (its answer is then MACed with Kv); a viewer holding Kc sends its ``control.hello`` to a relay by itself.
    """

    def __init__(self, base_url: str, room: str, key: bytes, offer_keys: LinkKeys) -> None:
        self.base_url = base_url
        self.room = room
        self.key = key
        self.offer_keys = offer_keys
        self.configs: list[dict[str, Any]] = []
        """Every control message received, in order (``config``, ``presence``, ``stream.skipped``)."""
        self.frames: asyncio.Queue[EncodedChunk] = asyncio.Queue()
        self.tagged: asyncio.Queue[tuple[int, EncodedChunk]] = asyncio.Queue()
        """The same frames with the number of the connection that brought them (see ``connections``)."""
        self.raw: list[bytes] | None = None
        """Set it to a list to keep every ``video`` message as it arrived."""
        self.signals: list[dict[str, Any]] = []
        self.control: RTCDataChannel | None = None
        self._control_arrived = asyncio.Event()
        self._reassemblers: dict[int, Reassembler] = {}
        """One per surface: each has its own frame numbers."""
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._listener: asyncio.Task[None] | None = None
        self._outcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._channels: set[str] = set()
        self._seq = 0
        self.opened = asyncio.Event()
        """Set while the current connection's channels are both open."""
        self.connections = 0
        """Connections whose channels opened, this one included."""
        self.via_relay = False
        self.id = ""
        """The peer id the signaling server gave this viewer."""
        self.pc = self._new_pc()

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            if pc is not self.pc:
                return
            if channel.label == "control":
                self.control = channel

                @channel.on("message")
                def on_control(message: str) -> None:
                    if pc is self.pc:
                        self.configs.append(json.loads(message))
                        self._control_arrived.set()

            else:

                @channel.on("message")
                def on_video(message: bytes) -> None:
                    if pc is self.pc:
                        self._video(message)

            self._channels.add(channel.label)
            if self._channels == {"video", "control"}:
                self.connections += 1
                if self.via_relay and self.key == self.offer_keys.control:
                    self.relayed({"type": "control.hello"})  # as a page does: its role, proved end to end
                self.opened.set()
                self._settle(next(m for m in reversed(self.signals) if m["type"] == "offer"))

        return pc

    async def connect(self) -> dict[str, Any]:
        """Join and answer; returns the last signaling message: the offer answered once the channels are open (or
        after 10 s without), or a reject."""
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(f"{self.base_url}/ws")
        await self._ws.send_json({"type": "hello", "room": self.room, "role": "viewer"})
        self._listener = asyncio.ensure_future(self._listen())
        try:
            return await asyncio.wait_for(asyncio.shield(self._outcome), 10)
        except TimeoutError:
            offers = [m for m in self.signals if m["type"] == "offer"]
            if not offers:
                raise
            return offers[-1]

    async def _listen(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                msg = json.loads(message.data)
                self.signals.append(msg)
                if msg["type"] == "welcome":
                    self.id = msg["peer"]
                elif msg["type"] == "offer":
                    await self._answer(msg)
                elif msg["type"] == "reject":
                    self._settle(msg)
        except Exception as exc:
            if not self._outcome.done():
                self._outcome.set_exception(exc)
            raise

    def _settle(self, msg: dict[str, Any]) -> None:
        if not self._outcome.done():
            self._outcome.set_result(msg)

    async def _answer(self, msg: dict[str, Any]) -> None:
        assert msg["mac"] == self.offer_keys.offer_mac(self.id, msg["sdp"]), "offer not from the desktop"
        if self.pc.remoteDescription is not None:
            # Moved to another upstream: this offer replaces the connection.
            old, self.pc = self.pc, self._new_pc()
            self.opened.clear()
            self._channels = set()
            self.control = None
            self._reassemblers = {}
            await old.close()
        pc = self.pc
        self.via_relay = msg.get("relay") is True
        await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
        with LOOPBACK.gathering():
            await pc.setLocalDescription(await pc.createAnswer())
        sdp = pc.localDescription.sdp
        key = self.key
        if self.via_relay and key == self.offer_keys.control:
            key = self.offer_keys.view  # a relay may hold only Kv (§7)
        assert self._ws is not None
        await self._ws.send_json({"type": "answer", "sdp": sdp, "mac": LinkKeys.answer_mac(key, self.id, sdp)})

    def _video(self, message: bytes) -> None:
        if self.raw is not None:
            self.raw.append(message)
        surface = HEADER.unpack_from(message)[2] if len(message) >= HEADER_SIZE else 0
        done = self._reassemblers.setdefault(surface, Reassembler()).push(message)
        if done is not None:
            self.frames.put_nowait(done.chunk)
            self.tagged.put_nowait((self.connections, done.chunk))

    def presence(self) -> dict[str, Any] | None:
        """The last ``presence`` the desktop sent this viewer."""
        return next((m for m in reversed(self.configs) if m["type"] == "presence"), None)

    async def frame_of(self, connection: int, within: float = 10) -> EncodedChunk:
        """The next frame that connection number ``connection`` (or a later one) brought."""

        async def first() -> EncodedChunk:
            while True:
                tag, chunk = await self.tagged.get()
                if tag >= connection:
                    return chunk

        return await asyncio.wait_for(first(), within)

    async def wait_control(self, predicate: Any, within: float = 10) -> dict[str, Any]:
        """The first control message received (already, or from now on) that satisfies ``predicate``."""

        async def first() -> dict[str, Any]:
            while True:
                self._control_arrived.clear()
                found = next((m for m in self.configs if predicate(m)), None)
                if found is not None:
                    return found
                await self._control_arrived.wait()

        return await asyncio.wait_for(first(), within)

    async def wait_presence(self, predicate: Any) -> dict[str, Any]:
        for _ in range(200):
            last = self.presence()
            if last is not None and predicate(last):
                return last
            await asyncio.sleep(0.05)  # polling a list the channel's handler appends to
        raise AssertionError(f"no presence matching the condition; last: {self.presence()}")

    def send(self, message: dict[str, Any]) -> None:
        assert self.control is not None
        self.control.send(json.dumps(message))

    def relayed(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send ``message`` to a relay in a ``relayed`` envelope sealed with this viewer's key — which the desktop
        opens only if that key is Kc. Returns the envelope."""
        self._seq += 1
        sealed = envelope.seal(self.key, self.id, self._seq, json.dumps(message, separators=(",", ":"))).message()
        self.send(sealed)
        return sealed

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # its failure was reported by connect()
                await self._listener
        await self.pc.close()
        if self._http is not None:
            await self._http.close()


@contextlib.asynccontextmanager
async def sharing(
    display: str,
    control: ControlMode = ControlMode.SHARED,
    max_direct: int = MAX_PEERS,
    windows: tuple[WindowInfo, ...] = (),
    files: TransferFolder | None = None,
    viewers_upload: bool = False,
    ice: IcePolicy = LOOPBACK,
) -> AsyncIterator[tuple[ShareSession, SignalingServer]]:
    """A session sharing ``display`` (or only ``windows`` of it) through its own signaling server on a free port,
    ICE on 127.0.0.1 only (or as ``ice`` says); with ``files``, that transfer folder (the session closes it)."""
    server = SignalingServer("127.0.0.1", 0)
    await server.start()
    options = ShareOptions(
        fps=30,
        ice=ice,
        control=control,
        max_direct=max_direct,
        windows=windows,
        files=files,
        viewers_upload=viewers_upload,
    )
    session = ShareSession(display, LinkKeys.generate(), server, options)
    try:
        await session.start()
        yield session, server
    finally:
        try:
            await session.stop()  # (raises if a recording failed: the server stops all the same)
        finally:
            await server.stop()


def link(session: ShareSession, server: SignalingServer, control: bool = True) -> str:
    """The operator (or view-only) link of ``session``, as the desktop prints it."""
    keys = session.keys
    return f"http://127.0.0.1:{server.port}/#{keys.control_fragment() if control else keys.view_fragment()}"


def viewer(session: ShareSession, server: SignalingServer, key: bytes) -> PyViewer:
    """A Python viewer of ``session`` holding ``key``."""
    return PyViewer(f"http://127.0.0.1:{server.port}", session.keys.room, key, session.keys)
