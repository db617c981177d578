"""A standalone signaling server's lobby and a desktop's seat on it (docs/protocol.md §11), without a browser: what
is checked and refused, what the lobby is told, and a seat that comes back after the server restarts."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from impromptu.capture import Frame
from impromptu.encode.thumbnail import MAX_BYTES, thumbnail
from impromptu.errors import UsageError
from impromptu.link import LinkKeys
from impromptu.signaling import RemoteSignaling, SignalingServer, SignalUrl
from impromptu.signaling.lobby import Lobby
from tests.harness import wait_until

TOKEN = "a-token-for-tests"
ROOM = LinkKeys.generate().room


SEAT = "s" * 32


def _hello(**fields: Any) -> dict[str, Any]:
    return {"type": "hello", "role": "desktop", "room": ROOM, "token": TOKEN, "name": "one", "seat": SEAT, **fields}


# The lobby on its own -------------------------------------------------------------------------------------


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, ws: Any, message: dict[str, Any]) -> None:
        self.messages.append((ws, message))

    def to(self, ws: Any) -> list[dict[str, Any]]:
        return [m for w, m in self.messages if w is ws]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"token": "wrong"}, "wrong token"),
        ({"token": None}, "wrong token"),
        ({"token": "wrong", "name": ""}, "wrong token"),  # nothing else is said to whoever has no token
        ({"name": ""}, "name is missing"),
        ({"name": "x" * 65}, "over 64"),
        ({"name": "evil\u202ename"}, "control characters"),
        ({"name": "line\nbreak"}, "control characters"),
        ({"max_direct": 0}, "max_direct"),
        ({"max_direct": 33}, "max_direct"),
        ({"max_direct": True}, "max_direct"),
        ({"links": {"control": "c=short", "view": "v=" + "A" * 43}}, "links"),
        ({"links": {"control": "c=" + "A" * 43}}, "links"),
        ({"links": "c=x"}, "links"),
        ({"seat": None}, "seat secret"),
        ({"seat": "short"}, "seat secret"),
    ],
)
def test_a_desktop_hello_is_checked(fields: dict[str, Any], reason: str) -> None:
    refusal = Lobby(TOKEN, Sent()).check_desktop(_hello(**fields))
    assert refusal is not None and reason in refusal


def test_a_good_desktop_hello_passes() -> None:
    links = {"control": "c=" + "A" * 43, "view": "v=" + "B" * 43}
    assert Lobby(TOKEN, Sent()).check_desktop(_hello(links=links, max_direct=4)) is None


def test_lobbies_get_the_list_at_once_and_each_change_and_uptime_runs_on() -> None:
    now = [100.0]
    sent = Sent()
    lobby = Lobby(TOKEN, sent, clock=lambda: now[0])
    card = lobby.add(ROOM, _hello(), socket="desktop")
    lobby.watch("page")
    (listing,) = sent.to("page")
    assert listing["desktops"] == [
        {
            "id": card.id,
            "name": "one",
            "width": None,
            "height": None,
            "viewers": None,
            "uptime": None,
            "surfaces": None,
            "links": None,
        }
    ]
    lobby.status(card, {"type": "status", "width": 800, "height": 600, "viewers": 1, "uptime": 5, "surfaces": 1})
    assert sent.to("page")[-1]["desktops"][0] | {} == listing["desktops"][0] | {
        "width": 800,
        "height": 600,
        "viewers": 1,
        "uptime": 5,
        "surfaces": 1,
    }
    # Only the uptime moved: no new list (the page counts the seconds itself) ...
    now[0] += 3
    lobby.status(card, {"type": "status", "width": 800, "height": 600, "viewers": 1, "uptime": 8, "surfaces": 1})
    assert len(sent.to("page")) == 2
    # ... but a page that comes now is told the uptime as of now.
    now[0] += 2
    lobby.watch("late")
    assert sent.to("late")[0]["desktops"][0]["uptime"] == 10
    lobby.status(card, {"type": "status", "width": -1, "height": "x", "viewers": 2, "uptime": True})
    latest = sent.to("page")[-1]["desktops"][0]
    assert (latest["width"], latest["height"], latest["viewers"], latest["uptime"]) == (None, None, 2, None)
    assert lobby.remove("desktop") is card
    assert sent.to("page")[-1] == {"type": "desktops", "desktops": []}
    lobby.unwatch("page")
    lobby.add(ROOM, _hello(), socket="desktop")
    assert sent.to("page")[-1] == {"type": "desktops", "desktops": []}, "an unwatched page is told nothing"


def test_thumbnails_are_small_images_or_dropped() -> None:
    sent = Sent()
    lobby = Lobby(TOKEN, sent)
    card = lobby.add(ROOM, _hello(), socket="desktop")
    lobby.watch("page")
    jpeg = base64.b64encode(b"\xff\xd8 a small picture").decode()
    assert lobby.thumbnail(card, {"mime": "image/jpeg", "data": jpeg})
    assert sent.to("page")[-1] == {"type": "thumbnail", "id": card.id, "mime": "image/jpeg", "data": jpeg}
    too_big = base64.b64encode(bytes(41 * 1024)).decode()
    for bad in (
        {"mime": "text/html", "data": jpeg},
        {"mime": "image/svg+xml", "data": jpeg},
        {"mime": "image/jpeg", "data": "not base64!"},
        {"mime": "image/jpeg", "data": ""},
        {"mime": "image/jpeg", "data": too_big},
        {"mime": "image/jpeg"},
    ):
        assert not lobby.thumbnail(card, bad), bad
    lobby.watch("late")
    assert sent.to("late")[-1]["data"] == jpeg, "a page that comes later gets the last good one"


def test_a_thumbnail_is_a_small_jpeg_of_the_picture_with_its_aspect() -> None:
    pixels = np.zeros((1080, 1920, 4), np.uint8)
    pixels[:, :, 2] = 200  # red, in BGRA
    made = thumbnail(Frame(pixels.tobytes(), 1920, 1080, 0))
    assert made is not None and len(made) <= MAX_BYTES
    decoded = cv2.imdecode(np.frombuffer(made, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (180, 320, 3)
    assert abs(int(decoded[90, 160, 2]) - 200) < 8 and int(decoded[90, 160, 0]) < 8
    noise = np.random.default_rng(1).integers(0, 256, (1080, 1920, 4), np.uint8)
    noisy = thumbnail(Frame(noise.tobytes(), 1920, 1080, 0))
    assert noisy is None or len(noisy) <= MAX_BYTES, "noise is made smaller, or not sent"


def test_a_signal_url_carries_its_token_in_the_fragment_only() -> None:
    url = SignalUrl.parse("https://lobby.example:8443/sub/#token=abc%2Bdef")
    assert (url.base, url.token) == ("https://lobby.example:8443/sub", "abc+def")
    assert url.websocket == "wss://lobby.example:8443/sub/ws"
    assert url.page == "https://lobby.example:8443/sub/view"
    assert SignalUrl.parse("http://127.0.0.1:8080").token is None
    with pytest.raises(UsageError, match="not the http"):
        SignalUrl.parse("ftp://x/#token=secret")
    with pytest.raises(UsageError) as refused:
        SignalUrl.parse("nonsense#token=secret")
    assert "secret" not in str(refused.value)


# The server, with desktops and lobbies over its websocket ---------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    s = SignalingServer("127.0.0.1", 0, lobby_token=TOKEN)
    await s.start()
    yield s
    await s.stop()


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    message = json.loads(msg.data)
    assert isinstance(message, dict)
    return message


async def test_wrong_tokens_are_refused_and_the_socket_closed(server: SignalingServer) -> None:
    url = f"http://127.0.0.1:{server.port}/ws"
    async with aiohttp.ClientSession() as http:
        for hello in (
            {"type": "hello", "role": "lobby", "token": "wrong"},
            {"type": "hello", "role": "lobby"},
            _hello(token="wrong"),
        ):
            async with http.ws_connect(url) as ws:
                await ws.send_json(hello)
                refused = await _receive(ws)
                assert refused["type"] == "refused" and "wrong" in refused["reason"]
                assert (await ws.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert server.lobby is not None and server.lobby.cards == []


async def test_an_embedded_server_takes_no_desktop_over_its_socket() -> None:
    embedded = SignalingServer("127.0.0.1", 0)
    await embedded.start()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{embedded.port}/ws") as ws:
            await ws.send_json(_hello())
            assert (await _receive(ws))["type"] == "refused"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{embedded.port}/") as page:
                assert "lib/app.js" in await page.text(), "an embedded server's / is the operator page"
            async with http.get(f"http://127.0.0.1:{embedded.port}/healthz") as health:
                assert health.status == 200
    finally:
        await embedded.stop()


async def test_a_desktop_coming_back_takes_its_seat_as_it_is_and_nobody_else_can(
    server: SignalingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{server.port}/ws"
    async with aiohttp.ClientSession() as http:
        old = await http.ws_connect(url)
        await old.send_json(_hello())
        assert (await _receive(old))["type"] == "welcome"
        page = await http.ws_connect(url)
        await page.send_json({"type": "hello", "role": "viewer", "room": ROOM})
        welcome = await _receive(page)
        assert await _receive(old) == {"type": "join", "peer": welcome["peer"]}

        # Someone with the token and the room id, but not the seat secret, is refused; the desktop keeps its seat.
        impostor = await http.ws_connect(url)
        await impostor.send_json(_hello(name="impostor", seat="x" * 32))
        assert await _receive(impostor) == {"type": "refused", "reason": "a desktop is already sharing in this room"}
        assert server.lobby is not None and [card.name for card in server.lobby.cards] == ["one"]

        # The desktop itself, back on a new socket before the old one was seen to die, takes the seat as it is:
        # the page already seated is neither told the desktop left nor announced again.
        new = await http.ws_connect(url)
        await new.send_json(_hello(name="one again"))
        assert (await _receive(new))["type"] == "welcome"
        assert (await old.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert [card.name for card in server.lobby.cards] == ["one again"]
        await new.send_json({"type": "offer", "peer": welcome["peer"], "sdp": "v=0", "mac": "m"})
        assert (await _receive(page))["type"] == "offer", "the page hears the desktop on its new socket"
        with pytest.raises(TimeoutError):
            await new.receive(timeout=0.3)  # (no join for the page it has)
        await page.send_json({"type": "answer", "sdp": "v=0", "mac": "m"})
        assert (await _receive(new))["type"] == "answer"
        for ws in (new, page):
            await ws.close()
        await wait_until(lambda: not server.lobby.cards, 5)


async def test_two_hellos_at_once_seat_one_desktop(server: SignalingServer) -> None:
    url = f"http://127.0.0.1:{server.port}/ws"
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(url) for _ in range(4)]
        await asyncio.gather(*(ws.send_json(_hello(name=f"d{i}", seat=f"{i}" * 32)) for i, ws in enumerate(sockets)))
        answers = [(await _receive(ws))["type"] for ws in sockets]
        assert sorted(answers) == ["refused", "refused", "refused", "welcome"]
        assert server.lobby is not None and len(server.lobby.cards) == 1
        for ws in sockets:
            await ws.close()
        await wait_until(lambda: not server.lobby.cards, 5)


async def test_a_socket_that_says_no_hello_is_closed(server: SignalingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("impromptu.signaling.server.HELLO_TIMEOUT_S", 0.2)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{server.port}/ws") as ws:
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_a_seat_reports_to_the_lobby_and_comes_back_after_a_restart(server: SignalingServer) -> None:
    port = server.port
    remote = RemoteSignaling(SignalUrl.parse(f"http://127.0.0.1:{port}"), TOKEN, "seat")
    remote.links = {"control": "c=" + "A" * 43, "view": "v=" + "B" * 43}
    remote.status = lambda: {"width": 320, "height": 200, "viewers": 0, "uptime": 1, "surfaces": 1}

    async def picture() -> bytes:
        return b"\xff\xd8 a picture"

    remote.thumbnail = picture
    joins: list[dict[str, Any]] = []
    seat = remote.attach_desktop(ROOM, joins.append, 4)
    try:
        await asyncio.wait_for(remote.connected.wait(), 10)
        async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{port}/ws") as lobby:
            await lobby.send_json({"type": "hello", "role": "lobby", "token": TOKEN})
            seen: dict[str, Any] = {}
            while "thumbnail" not in seen or not seen["desktops"]["desktops"][0]["width"]:
                message = await _receive(lobby)
                seen[message["type"]] = message
            (card,) = seen["desktops"]["desktops"]
            assert (card["name"], card["width"], card["height"], card["links"]) == ("seat", 320, 200, remote.links)
            assert base64.b64decode(seen["thumbnail"]["data"]) == b"\xff\xd8 a picture"

        await server.stop()
        await wait_until(lambda: not remote.connected.is_set(), 10)
        again = SignalingServer("127.0.0.1", port, lobby_token=TOKEN)
        await again.start()
        try:
            await asyncio.wait_for(remote.connected.wait(), 5)
            assert again.lobby is not None and [c.name for c in again.lobby.cards] == ["seat"]
            async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{port}/ws") as page:
                await page.send_json({"type": "hello", "role": "viewer", "room": ROOM})
                welcome = await _receive(page)
                await wait_until(lambda: {"type": "join", "peer": welcome["peer"]} in joins, 5)
        finally:
            await again.stop()
    finally:
        seat.detach()
        await remote.close()
    assert not remote.refused.done()


async def test_a_seat_refused_at_first_says_why(server: SignalingServer) -> None:
    remote = RemoteSignaling(SignalUrl.parse(f"http://127.0.0.1:{server.port}"), "not-the-token", "seat")
    remote.attach_desktop(ROOM, lambda message: None, 4)
    try:
        assert await asyncio.wait_for(remote.refused, 10) == "wrong token"
    finally:
        await remote.close()


async def test_a_seat_refused_later_keeps_trying_and_says_why(
    server: SignalingServer, caplog: pytest.LogCaptureFixture
) -> None:
    port = server.port
    remote = RemoteSignaling(SignalUrl.parse(f"http://127.0.0.1:{port}"), TOKEN, "seat")
    remote.attach_desktop(ROOM, lambda message: None, 4)
    try:
        await asyncio.wait_for(remote.connected.wait(), 10)
        await server.stop()
        other = SignalingServer("127.0.0.1", port, lobby_token="another-token-entirely")
        await other.start()
        try:
            await wait_until(lambda: remote.problem is not None, 10)
            assert remote.problem == "the server refused this desktop: wrong token"
            # The server refuses attempt after attempt; the desktop says so once.
            await wait_until(lambda: caplog.text.count("refused a desktop: wrong token") >= 3, 10)
            assert caplog.text.count("refused this desktop") == 1
            assert not remote.refused.done(), "a desktop that was seated once goes on"
        finally:
            await other.stop()
    finally:
        await remote.close()
