"""The signaling and page server (aiohttp): serves the pages and passes SDP between a room's desktop, its relays
and its viewers (docs/protocol.md §2, §7). It learns only room ids, never a link's keys, and never sees the
stream.

Embedded in a desktop's process, its one desktop is seated in-process (``attach_desktop``). Standalone
(``impromptu signal``, §11), it has a :class:`Lobby`: desktops join over the websocket with its token, and ``/`` is the
lobby page listing them."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import logging
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from impromptu.errors import SignalingError
from impromptu.signaling.lobby import DesktopCard, Lobby
from impromptu.signaling.seat import DesktopHandler
from impromptu.signaling.tree import DESKTOP, MAX_RELAY_CAPACITY, Assignment, RoomTree

logger = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024
MAX_SOCKETS = 256
HELLO_TIMEOUT_S = 10.0
ROOM_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
WEB_ROOT = Path(str(resources.files("impromptu") / "web"))

# The pages load only their own modules, and talk only to this server and to peers.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

ROLES = ("viewer", "relay")
DEFAULT_MAX_DIRECT = 32


@dataclass
class _Room:
    desktop: DesktopHandler | None = None
    pages: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    tree: RoomTree = field(default_factory=RoomTree)


class DesktopAttachment:
    """An in-process desktop's seat in a room: it sends through ``send`` and receives through its handler."""

    def __init__(self, server: SignalingServer, room: str) -> None:
        self._server = server
        self.room = room

    def send(self, message: dict[str, Any]) -> None:
        self._server._from_desktop(self.room, message)

    def detach(self) -> None:
        self._server._detach_desktop(self.room)


class SignalingServer:
    """Serves ``impromptu/web`` and the ``/ws`` signaling endpoint on one address."""

    def __init__(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None = None, lobby_token: str | None = None
    ) -> None:
        """With ``lobby_token`` the server is standalone: desktops join it over the websocket (§11)."""
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self.lobby = None if lobby_token is None else Lobby(lobby_token, self._send)
        self._rooms: dict[str, _Room] = {}
        self._remote: dict[str, web.WebSocketResponse] = {}
        """The socket of each room's desktop joined over the websocket."""
        self._seats: dict[str, str] = {}
        """The seat secret each of those desktops said in its first hello."""
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._send_tasks: set[asyncio.Task[Any]] = set()
        self._metrics: tuple[Callable[[], str], str] | None = None
        self._closing = False

    @property
    def scheme(self) -> str:
        return "https" if self._ssl else "http"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._lobby_page if self.lobby is not None else self._page)
        app.router.add_get("/view", self._page)
        app.router.add_get("/relay", self._relay_page)
        app.router.add_get("/ws", self._websocket)
        app.router.add_static("/lib/", WEB_ROOT / "lib")
        app.router.add_get("/style.css", self._file("style.css"))
        app.router.add_get("/lobby.css", self._file("lobby.css"))
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/healthz", self._healthz)
        app.on_response_prepare.append(self._headers)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self._ssl, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise SignalingError(
                    f"port {self.port} on {self.host} is in use: pick another with --bind HOST:PORT"
                ) from exc
            raise SignalingError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        # No new socket from here on (a desktop reconnecting at once would otherwise hold up the shutdown).
        self._closing = True
        for ws in list(self._sockets):
            await ws.close()
        await runner.cleanup()
        for task in list(self._send_tasks):
            task.cancel()

    def serve_metrics(self, render: Callable[[], str] | None, token: str = "") -> None:
        """Serve ``render()`` (Prometheus text) at ``/metrics`` to requests bearing ``token``
        (``Authorization: Bearer TOKEN``, or ``?token=TOKEN``); ``None`` stops serving it."""
        self._metrics = None if render is None else (render, token)

    async def _metrics_page(self, request: web.Request) -> web.StreamResponse:
        if self._metrics is None:
            raise web.HTTPNotFound()
        render, token = self._metrics
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        given = given or request.query.get("token", "")
        if not token or not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode()):
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer realm="impromptu metrics"'})
        return web.Response(
            body=render().encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Cache-Control": "no-store"},
        )

    def attach_desktop(
        self, room: str, handler: DesktopHandler, max_direct: int = DEFAULT_MAX_DIRECT
    ) -> DesktopAttachment:
        """Seat a desktop in ``room``. It is sent a ``join`` for at most ``max_direct`` pages at a time; later ones
        go to relays (docs/protocol.md §7)."""
        entry = self._rooms.setdefault(room, _Room())
        if entry.desktop is not None:
            raise SignalingError("a desktop is already sharing in this room")
        entry.desktop = handler
        self._join(entry, entry.tree.desktop_joined(max_direct))
        return DesktopAttachment(self, room)

    def _detach_desktop(self, room: str) -> None:
        entry = self._rooms.get(room)
        if entry is None or entry.desktop is None:
            return
        entry.desktop = None
        entry.tree.desktop_left()
        if self._closing:
            return  # (see _leave)
        for peer in entry.tree.waiting():
            self._send(entry.pages[peer], {"type": "desktop-gone"})
        self._forget_if_empty(room)

    def _from_desktop(self, room: str, message: dict[str, Any]) -> None:
        entry = self._rooms.get(room)
        peer = message.get("peer")
        if entry is None or not isinstance(peer, str) or peer not in entry.pages:
            return  # The viewer left meanwhile.
        if message.get("type") in ("offer", "reject") and entry.tree.seats[peer].upstream == DESKTOP:
            self._send(entry.pages[peer], message)

    def _join(self, entry: _Room, assignments: list[Assignment]) -> None:
        """Tell each new upstream about the page it is to serve; it answers with an offer."""
        for peer, upstream in assignments:
            join = {"type": "join", "peer": peer}
            if upstream == DESKTOP:
                if entry.desktop is not None:
                    entry.desktop(join)
            elif upstream in entry.pages:
                self._send(entry.pages[upstream], join)

    def _send(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        if ws.closed:
            return
        task = asyncio.ensure_future(self._send_json(ws, message))
        self._send_tasks.add(task)
        task.add_done_callback(self._send_tasks.discard)

    @staticmethod
    async def _send_json(ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(json.dumps(message, separators=(",", ":")))

    def _forget_if_empty(self, room: str) -> None:
        entry = self._rooms.get(room)
        if entry is not None and entry.desktop is None and not entry.pages:
            del self._rooms[room]

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_ROOT / "index.html")

    async def _relay_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_ROOT / "relay.html")

    async def _lobby_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_ROOT / "lobby.html")

    @staticmethod
    def _file(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(WEB_ROOT / name)

        return serve

    @staticmethod
    async def _healthz(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            # Browsers send Origin on websockets: only our own pages may use signaling, not any site the
            # operator happens to have open.
            raise web.HTTPForbidden(text="signaling is for this server's own pages")
        if self._closing:
            raise web.HTTPServiceUnavailable(text="shutting down")
        if len(self._sockets) >= MAX_SOCKETS:
            raise web.HTTPServiceUnavailable(text="too many connections")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=20)
        await ws.prepare(request)
        self._sockets.add(ws)
        peer = secrets.token_hex(8)
        room: str | None = None
        # A socket that says no hello in time is closed: idle ones would take the places of real pages.
        no_hello = asyncio.get_running_loop().call_later(HELLO_TIMEOUT_S, self._close_later, ws)
        try:
            async for msg in ws:
                no_hello.cancel()
                if msg.type != WSMsgType.TEXT:
                    break
                message = _parse(msg.data)
                if message is None:
                    logger.warning("signaling: dropped a malformed message from %s", request.remote)
                    if room is None:
                        break  # The first message must be a valid hello.
                    continue
                if room is None:
                    if message.get("type") == "hello" and message.get("role") in ("desktop", "lobby"):
                        await self._standalone(ws, message)
                        break
                    room = self._hello(ws, peer, message)
                    if room is None:
                        break
                else:
                    self._from_page(room, peer, message)
        finally:
            no_hello.cancel()
            self._sockets.discard(ws)
            if room is not None:
                self._leave(room, peer)
            await ws.close()
        return ws

    async def _standalone(self, ws: web.WebSocketResponse, hello: dict[str, Any]) -> None:
        """A desktop or a lobby page, on a standalone server: refused, or served until its socket closes."""
        if self.lobby is None:
            refusal = "this is a desktop's own server: join an `impromptu signal` server instead"
            await self._send_json(ws, {"type": "refused", "reason": refusal})
            return
        if hello["role"] == "lobby":
            if not self.lobby.token_ok(hello.get("token")):
                logger.warning("signaling: refused a lobby page: wrong token")
                await self._send_json(ws, {"type": "refused", "reason": "wrong lobby token"})
                return
            self.lobby.watch(ws)
            try:
                async for msg in ws:
                    if msg.type != WSMsgType.TEXT:
                        break  # a lobby page has nothing to say after its hello
            finally:
                self.lobby.unwatch(ws)
            return
        room = hello.get("room")
        reason = self.lobby.check_desktop(hello)
        if reason is None and not (isinstance(room, str) and ROOM_RE.match(room)):
            reason = "the room id is not 22 characters of base64url"
        if reason is not None:
            logger.warning("signaling: refused a desktop: %s", reason)
            await self._send_json(ws, {"type": "refused", "reason": reason})
            return
        assert isinstance(room, str)
        entry = self._rooms.get(room)
        previous = self._remote.get(room)
        # Only the desktop that holds the seat may take it again (its old socket not yet seen to die): it proves that
        # with the seat secret of its first hello. Anyone else is refused, token or not.
        taken = entry is not None and entry.desktop is not None
        returning = taken and previous is not None and hmac.compare_digest(self._seats[room], hello["seat"])
        if taken and not returning:
            logger.warning("signaling: refused a desktop: its room already has a desktop")
            await self._send_json(ws, {"type": "refused", "reason": "a desktop is already sharing in this room"})
            return
        card = self.lobby.add(room, hello, ws)
        self._send(ws, {"type": "welcome", "peer": card.id})  # before any join
        try:
            if returning and previous is not None and entry is not None:
                # The same desktop back: the new socket takes the seat as it is, with the room's pages where they
                # are — no desktop-gone, no join for the viewers it already has.
                entry.desktop = partial(self._send, ws)
                self._remote[room] = ws
                self.lobby.remove(previous)
                self._close_later(previous)
            else:
                self.attach_desktop(room, partial(self._send, ws), hello.get("max_direct", DEFAULT_MAX_DIRECT))
                self._remote[room] = ws
                self._seats[room] = hello["seat"]
            logger.info("signaling: desktop %r joined", card.name)
            await self._from_remote_desktop(ws, room, card)
        finally:
            self.lobby.remove(ws)
            self._remote_left(room, ws)

    async def _from_remote_desktop(self, ws: web.WebSocketResponse, room: str, card: DesktopCard) -> None:
        assert self.lobby is not None
        async for msg in ws:
            if msg.type != WSMsgType.TEXT or self._remote.get(room) is not ws:
                break  # (a socket replaced by the desktop's new one says nothing more)
            message = _parse(msg.data)
            kind = None if message is None else message.get("type")
            if message is None:
                logger.warning("signaling: dropped a malformed message from desktop %r", card.name)
            elif kind in ("offer", "reject"):
                self._from_desktop(room, message)
            elif kind == "status":
                self.lobby.status(card, message)
            elif kind == "thumbnail":
                if not self.lobby.thumbnail(card, message):
                    logger.warning("signaling: dropped a thumbnail from desktop %r", card.name)
            else:
                logger.warning("signaling: dropped a %r message from desktop %r", str(kind)[:40], card.name)

    def _remote_left(self, room: str, ws: web.WebSocketResponse) -> None:
        """The desktop on ``ws`` leaves ``room`` (unless a newer socket of the same desktop holds the seat)."""
        if self._remote.get(room) is not ws:
            return
        del self._remote[room]
        del self._seats[room]
        self._detach_desktop(room)
        logger.info("signaling: a desktop left")

    def _close_later(self, ws: web.WebSocketResponse) -> None:
        task = asyncio.ensure_future(ws.close())
        self._send_tasks.add(task)
        task.add_done_callback(self._send_tasks.discard)

    def _hello(self, ws: web.WebSocketResponse, peer: str, message: dict[str, Any]) -> str | None:
        room, role = message.get("room"), message.get("role")
        if message.get("type") != "hello" or role not in ROLES or not isinstance(room, str):
            return None
        if not ROOM_RE.match(room):
            return None
        entry = self._rooms.setdefault(room, _Room())
        entry.pages[peer] = ws
        self._send(ws, {"type": "welcome", "peer": peer})
        placed = entry.tree.add(peer, relay=role == "relay")
        if entry.tree.seats[peer].upstream is None:
            self._send(ws, self._waiting(entry))
        self._join(entry, placed)
        return room

    @staticmethod
    def _waiting(entry: _Room) -> dict[str, Any]:
        return {"type": "waiting", "reason": "full"} if entry.desktop is not None else {"type": "waiting"}

    def _from_page(self, room: str, peer: str, message: dict[str, Any]) -> None:
        entry = self._rooms.get(room)
        if entry is None or peer not in entry.tree.seats:
            return
        kind, seat = message.get("type"), entry.tree.seats[peer]
        if kind == "answer":
            self._answer(entry, peer, message)
        elif seat.relay and kind == "capacity":
            viewers = message.get("viewers")
            if isinstance(viewers, int) and not isinstance(viewers, bool) and 0 <= viewers <= MAX_RELAY_CAPACITY:
                self._join(entry, entry.tree.set_capacity(peer, viewers))
        elif seat.relay and kind in ("offer", "reject"):
            self._from_relay(entry, peer, message)

    def _from_relay(self, entry: _Room, relay: str, message: dict[str, Any]) -> None:
        """A relay's offer to (or rejection of) a page assigned to it; the server says it comes from a relay."""
        target = message.get("peer")
        if not isinstance(target, str) or target not in entry.tree.seats:
            return
        if entry.tree.seats[target].upstream != relay:
            return  # not one of this relay's pages: it may not speak to it
        if message["type"] == "offer":
            sdp, mac = message.get("sdp"), message.get("mac")
            if isinstance(sdp, str) and isinstance(mac, str):
                self._send(
                    entry.pages[target], {"type": "offer", "peer": target, "sdp": sdp, "mac": mac, "relay": True}
                )
        else:
            reason = message.get("reason")
            self._send(
                entry.pages[target],
                {"type": "reject", "peer": target, "reason": reason[:200] if isinstance(reason, str) else ""},
            )

    def _answer(self, entry: _Room, peer: str, message: dict[str, Any]) -> None:
        sdp, mac = message.get("sdp"), message.get("mac")
        upstream = entry.tree.seats[peer].upstream
        if not isinstance(sdp, str) or not isinstance(mac, str) or upstream is None:
            return
        answer = {"type": "answer", "peer": peer, "sdp": sdp, "mac": mac}
        if upstream == DESKTOP:
            if entry.desktop is not None:
                entry.desktop(answer)
        elif upstream in entry.pages:
            self._send(entry.pages[upstream], answer)

    def _leave(self, room: str, peer: str) -> None:
        entry = self._rooms.get(room)
        if entry is None or self._closing:
            # (A server shutting down closes every socket: its pages are not leaving, and their peer connections,
            # which need no signaling, go on — until a restarted server, §11.)
            return
        entry.pages.pop(peer, None)
        upstream, orphans, placed = entry.tree.remove(peer)
        leave = {"type": "leave", "peer": peer}
        if upstream == DESKTOP:
            if entry.desktop is not None:
                entry.desktop(leave)
        elif upstream is not None and upstream in entry.pages:
            self._send(entry.pages[upstream], leave)
        # A relay's pages are placed again at once: a fresh offer on their open sockets replaces the connection
        # through the relay that left, long before ICE would notice it is gone.
        self._join(entry, placed)
        for orphan in orphans:
            if entry.tree.seats[orphan].upstream is None:
                self._send(entry.pages[orphan], self._waiting(entry))
        self._forget_if_empty(room)


def _parse(text: str) -> dict[str, Any] | None:
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
