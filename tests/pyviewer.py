"""A minimal headless viewer in Python (aiortc), speaking docs/protocol.md, for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from impromptu.control import ControlMode
from impromptu.link import LinkKeys
from impromptu.rtc import IcePolicy
from impromptu.session import ShareOptions, ShareSession
from impromptu.signaling import SignalingServer
from impromptu.stream.framing import EncodedChunk, Reassembler


class PyViewer:
    def __init__(self, base_url: str, room: str, key: bytes, offer_keys: LinkKeys) -> None:
        self.base_url = base_url
        self.room = room
        self.key = key
        self.offer_keys = offer_keys
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.configs: list[dict[str, Any]] = []
        self.frames: asyncio.Queue[EncodedChunk] = asyncio.Queue()
        self.signals: list[dict[str, Any]] = []
        self.control: RTCDataChannel | None = None
        self._reassembler = Reassembler()
        self._http: aiohttp.ClientSession | None = None
        self.opened = asyncio.Event()
        self.id = ""
        """The peer id the signaling server gave this viewer."""

    async def connect(self) -> dict[str, Any]:
        """Join and answer; returns the last signaling message (an offer answered, or a reject)."""
        self._http = aiohttp.ClientSession()
        ws = await self._http.ws_connect(f"{self.base_url}/ws")
        await ws.send_json({"type": "hello", "room": self.room, "role": "viewer"})
        peer = ""

        @self.pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            if channel.label == "control":
                self.control = channel
                channel.on("message", lambda m: self.configs.append(json.loads(m)))
                self.opened.set()
            else:
                channel.on("message", self._video)

        while True:
            msg = await asyncio.wait_for(ws.receive_json(), 10)
            self.signals.append(msg)
            if msg["type"] == "welcome":
                peer = self.id = msg["peer"]
            elif msg["type"] == "offer":
                assert msg["mac"] == self.offer_keys.offer_mac(peer, msg["sdp"]), "offer not from the desktop"
                await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                sdp = self.pc.localDescription.sdp
                sdp = "\r\n".join(
                    line for line in sdp.splitlines() if not line.startswith("a=candidate:") or " 127.0.0.1 " in line
                )
                await ws.send_json({"type": "answer", "sdp": sdp, "mac": LinkKeys.answer_mac(self.key, peer, sdp)})
            elif msg["type"] == "reject":
                return msg
            if self.opened.is_set() or (msg["type"] == "offer" and await self._opened_within(10)):
                return msg

    async def _opened_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.opened.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _video(self, message: bytes) -> None:
        done = self._reassembler.push(message)
        if done is not None:
            self.frames.put_nowait(done.chunk)

    def presence(self) -> dict[str, Any] | None:
        """The last ``presence`` the desktop sent this viewer."""
        return next((m for m in reversed(self.configs) if m["type"] == "presence"), None)

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

    async def close(self) -> None:
        await self.pc.close()
        if self._http is not None:
            await self._http.close()


@contextlib.asynccontextmanager
async def sharing(
    display: str, control: ControlMode = ControlMode.SHARED
) -> AsyncIterator[tuple[ShareSession, SignalingServer]]:
    """A session sharing ``display`` through its own signaling server on a free port, ICE on 127.0.0.1 only."""
    server = SignalingServer("127.0.0.1", 0)
    await server.start()
    options = ShareOptions(fps=30, ice=IcePolicy(addresses=("127.0.0.1",)), control=control)
    session = ShareSession(display, LinkKeys.generate(), server, options)
    try:
        await session.start()
        yield session, server
    finally:
        await session.stop()
        await server.stop()


def viewer(session: ShareSession, server: SignalingServer, key: bytes) -> PyViewer:
    """A Python viewer of ``session`` holding ``key``."""
    return PyViewer(f"http://127.0.0.1:{server.port}", session.keys.room, key, session.keys)
