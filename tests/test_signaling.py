"""The signaling server relays SDP within a room, learns nothing else, and drops what is malformed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from impromptu.link import LinkKeys
from impromptu.signaling import SignalingServer


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    s = SignalingServer("127.0.0.1", 0)
    await s.start()
    yield s
    await s.stop()


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def __call__(self, message: dict[str, Any]) -> None:
        self.queue.put_nowait(message)

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue.get(), 5)


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return dict(json.loads(msg.data))


async def test_offer_and_answer_travel_between_desktop_and_viewer(server: SignalingServer) -> None:
    room = LinkKeys.generate().room
    desktop = Inbox()
    attachment = server.attach_desktop(room, desktop)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{server.port}/ws") as ws:
        await ws.send_json({"type": "hello", "room": room, "role": "viewer"})
        welcome = await receive(ws)
        assert welcome["type"] == "welcome"
        peer = welcome["peer"]
        assert await desktop.next() == {"type": "join", "peer": peer}
        attachment.send({"type": "offer", "peer": peer, "sdp": "v=0", "mac": "m"})
        assert await receive(ws) == {"type": "offer", "peer": peer, "sdp": "v=0", "mac": "m"}
        # A page cannot speak for another peer: the server stamps the sender's own id.
        await ws.send_json({"type": "answer", "peer": "someone-else", "sdp": "v=1", "mac": "n"})
        assert await desktop.next() == {"type": "answer", "peer": peer, "sdp": "v=1", "mac": "n"}
    assert await desktop.next() == {"type": "leave", "peer": peer}
    attachment.detach()


async def test_viewer_waits_for_a_desktop_and_hears_when_it_goes(server: SignalingServer) -> None:
    room = LinkKeys.generate().room
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{server.port}/ws") as ws:
        await ws.send_json({"type": "hello", "room": room, "role": "viewer"})
        peer = (await receive(ws))["peer"]
        assert await receive(ws) == {"type": "waiting"}
        desktop = Inbox()
        attachment = server.attach_desktop(room, desktop)
        assert await desktop.next() == {"type": "join", "peer": peer}
        attachment.detach()
        assert await receive(ws) == {"type": "desktop-gone"}


async def test_other_rooms_hear_nothing(server: SignalingServer) -> None:
    desktop = Inbox()
    server.attach_desktop(LinkKeys.generate().room, desktop)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{server.port}/ws") as ws:
        await ws.send_json({"type": "hello", "room": LinkKeys.generate().room, "role": "viewer"})
        assert (await receive(ws))["type"] == "welcome"
        assert await receive(ws) == {"type": "waiting"}
    assert desktop.queue.empty()


@pytest.mark.parametrize(
    "first",
    [
        {"type": "answer", "sdp": "x", "mac": "y"},
        {"type": "hello", "room": "short", "role": "viewer"},
        {"type": "hello", "room": "a" * 22, "role": "desktop"},
        {"type": "hello", "room": ["a" * 22], "role": "viewer"},
        "not json",
    ],
)
async def test_a_bad_hello_closes_the_socket(server: SignalingServer, first: dict[str, Any] | str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{server.port}/ws") as ws:
        await (ws.send_str(first) if isinstance(first, str) else ws.send_json(first))
        msg = await asyncio.wait_for(ws.receive(), 5)
        if isinstance(first, dict) and first.get("role") == "desktop":
            # A desktop's own server says why before it closes (a standalone one would check the hello, §11).
            assert msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "refused"
            msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_malformed_messages_are_dropped_not_fatal(server: SignalingServer) -> None:
    room = LinkKeys.generate().room
    desktop = Inbox()
    server.attach_desktop(room, desktop)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{server.port}/ws") as ws:
        await ws.send_json({"type": "hello", "room": room, "role": "viewer"})
        peer = (await receive(ws))["peer"]
        assert (await desktop.next())["type"] == "join"
        await ws.send_str("not json")
        await ws.send_str("[1, 2]")
        await ws.send_json({"type": "answer", "sdp": 5, "mac": "m"})
        await ws.send_json({"type": "answer", "sdp": "ok", "mac": "m"})
        assert await desktop.next() == {"type": "answer", "peer": peer, "sdp": "ok", "mac": "m"}


async def test_pages_are_served_with_a_strict_policy(server: SignalingServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}/") as page:
            assert page.status == 200
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            assert page.headers["Referrer-Policy"] == "no-referrer"
            assert "<canvas" in await page.text()
        async with http.get(f"http://127.0.0.1:{server.port}/lib/protocol.js") as module:
            assert module.status == 200
        async with http.get(f"http://127.0.0.1:{server.port}/lib/../../link.py") as escape:
            assert escape.status in (403, 404)


async def test_other_sites_cannot_use_signaling(server: SignalingServer) -> None:
    url = f"http://127.0.0.1:{server.port}/ws"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        async with http.ws_connect(url, headers={"Origin": f"http://127.0.0.1:{server.port}"}) as ws:
            await ws.send_json({"type": "hello", "room": LinkKeys.generate().room, "role": "viewer"})
            assert (await receive(ws))["type"] == "welcome"


async def hello(http: aiohttp.ClientSession, server: SignalingServer, room: str, role: str) -> tuple[Any, str]:
    ws = await http.ws_connect(f"http://127.0.0.1:{server.port}/ws")
    await ws.send_json({"type": "hello", "room": room, "role": role})
    welcome = await receive(ws)
    assert welcome["type"] == "welcome"
    return ws, welcome["peer"]


async def test_past_the_desktops_cap_viewers_go_to_a_ready_relay_and_back_when_it_leaves(
    server: SignalingServer,
) -> None:
    room = LinkKeys.generate().room
    desktop = Inbox()
    server.attach_desktop(room, desktop, max_direct=1)
    async with aiohttp.ClientSession() as http:
        relay, relay_id = await hello(http, server, room, "relay")
        assert await desktop.next() == {"type": "join", "peer": relay_id}
        viewer, viewer_id = await hello(http, server, room, "viewer")
        assert await receive(viewer) == {"type": "waiting", "reason": "full"}  # the relay is not ready yet
        await relay.send_json({"type": "capacity", "viewers": 2})
        assert await receive(relay) == {"type": "join", "peer": viewer_id}
        # The relay's offer reaches the viewer marked as a relay's; the answer goes back to the relay.
        await relay.send_json({"type": "offer", "peer": viewer_id, "sdp": "v=0", "mac": "m"})
        assert await receive(viewer) == {"type": "offer", "peer": viewer_id, "sdp": "v=0", "mac": "m", "relay": True}
        await viewer.send_json({"type": "answer", "sdp": "v=1", "mac": "n"})
        assert await receive(relay) == {"type": "answer", "peer": viewer_id, "sdp": "v=1", "mac": "n"}
        # The relay goes: the desktop hears it left, and the viewer is placed with the desktop at once.
        await relay.close()
        assert await desktop.next() == {"type": "leave", "peer": relay_id}
        assert await desktop.next() == {"type": "join", "peer": viewer_id}
        await viewer.close()


async def test_a_relay_speaks_only_to_its_own_pages_and_a_viewer_cannot_act_as_one(server: SignalingServer) -> None:
    room = LinkKeys.generate().room
    desktop = Inbox()
    server.attach_desktop(room, desktop, max_direct=1)
    async with aiohttp.ClientSession() as http:
        first, first_id = await hello(http, server, room, "viewer")
        assert await desktop.next() == {"type": "join", "peer": first_id}
        relay, relay_id = await hello(http, server, room, "relay")
        assert await receive(relay) == {"type": "waiting", "reason": "full"}
        # Neither a relay without a place nor a viewer may offer to a page it does not serve, or say it is ready.
        await first.send_json({"type": "capacity", "viewers": 4})
        await first.send_json({"type": "reject", "peer": relay_id, "reason": "x"})
        await first.send_json({"type": "answer", "sdp": "v=1", "mac": "n"})
        assert await desktop.next() == {"type": "answer", "peer": first_id, "sdp": "v=1", "mac": "n"}  # in order
        second, _ = await hello(http, server, room, "viewer")
        assert await receive(second) == {"type": "waiting", "reason": "full"}  # first's capacity counted for nothing
        relay_again, _ = await hello(http, server, room, "relay")
        assert await receive(relay_again) == {"type": "waiting", "reason": "full"}
        await relay_again.send_json({"type": "capacity", "viewers": 4})
        await relay_again.send_json({"type": "offer", "peer": first_id, "sdp": "v=0", "mac": "m"})
        await relay_again.close()  # returns once the server has read all it sent before
        server._detach_desktop(room)
        # The next thing either hears is that the desktop left: no reject from `first`, no offer from a relay.
        assert await receive(relay) == {"type": "desktop-gone"}
        assert await receive(first) == {"type": "desktop-gone"}
        for ws in (first, relay, second):
            await ws.close()
