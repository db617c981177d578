"""A desktop's seat on a standalone signaling server (docs/protocol.md §11), over its websocket.

It keeps the seat: when the socket closes (the server restarted, the network blinked) it connects again with
backoff and says ``hello`` again. Viewers' peer connections never depend on it, so their streams go on meanwhile.
While seated it tells the lobby how the desktop is (``status``) and shows it (``thumbnail``)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp

from impromptu.errors import UsageError
from impromptu.signaling.lobby import check_name
from impromptu.signaling.server import MAX_MESSAGE

logger = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 2.0
STATUS_EVERY_S = 3.0
"""``status`` at least this often; a change of what it says goes out within ``STATUS_CHECK_S``."""
STATUS_CHECK_S = 1.0
THUMBNAIL_EVERY_S = 3.0

Handler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SignalUrl:
    """``--signal URL``: where the server is, and its token if the URL carries one (``…/#token=T``)."""

    base: str
    """``http(s)://host:port[/path]``, without a trailing slash."""
    token: str | None

    @classmethod
    def parse(cls, text: str) -> SignalUrl:
        parts = urlsplit(text.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = text.partition("#")[0]  # never the token
            raise UsageError(f"--signal {shown!r} is not the http(s)://HOST:PORT of an `impromptu signal` server")
        token = parse_qs(parts.fragment).get("token", [None])[0]
        return cls(urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")), token)

    @property
    def websocket(self) -> str:
        scheme = "wss" if self.base.startswith("https:") else "ws"
        return f"{scheme}{self.base.removeprefix('https').removeprefix('http')}/ws"

    @property
    def page(self) -> str:
        """Where its operator page is: links are this plus ``#c=…``."""
        return f"{self.base}/view"


class SignalingRefused(Exception):
    """The server refused this desktop (its ``refused`` reason)."""


class RemoteSignaling:
    """Seats a desktop on a standalone server: the same ``attach_desktop`` as an embedded server's.

    ``refused`` is set with the server's reason if it refuses the first ``hello`` (a wrong token, say): the desktop
    should end. Later refusals are logged and retried."""

    def __init__(
        self,
        url: SignalUrl,
        token: str,
        name: str,
        *,
        ssl: aiohttp.Fingerprint | None = None,
    ) -> None:
        if (problem := check_name(name)) is not None:
            raise UsageError(f"--name: {problem}")
        self.url = url
        self._token = token
        self._name = name.strip()
        self.links: dict[str, str] | None = None
        """The link fragments handed to the lobby (``--publish-links``), set before the desktop attaches."""
        self._ssl: aiohttp.Fingerprint | bool = True if ssl is None else ssl
        self.refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.connected = asyncio.Event()
        """Set while seated."""
        self.status: Callable[[], dict[str, Any]] | None = None
        """What ``status`` says (set once the session is up)."""
        self.thumbnail: Callable[[], Awaitable[bytes | None]] | None = None
        """A JPEG of the desktop now, or ``None`` (set once the session is up, unless ``--no-thumbnail``)."""
        self._room: str | None = None
        self._handler: Handler | None = None
        self._max_direct = 32
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._ever_seated = False
        self._seatings = 0
        self._seat = secrets.token_urlsafe(24)
        """Proves to the server that a new socket of ours is this desktop back (§11)."""
        self.problem: str | None = None
        """Why the seat is lost for now, when it is more than the network: a refusal (for the health check)."""

    # The embedded server's interface --------------------------------------------------------------------

    def attach_desktop(self, room: str, handler: Handler, max_direct: int) -> RemoteSignaling:
        if self._task is not None:
            raise RuntimeError("a remote signaling seat holds one desktop")
        self._room, self._handler, self._max_direct = room, handler, max_direct
        self._task = asyncio.ensure_future(self._keep_seated())
        return self

    def send(self, message: dict[str, Any]) -> None:
        """An ``offer`` or ``reject``: lost if the socket is down (the page then retries from its ``hello``)."""
        self._send_now(message)

    def detach(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        tasks = {task for task in (self._task, *self._sends) if task is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # The seat -------------------------------------------------------------------------------------------

    def _send_now(self, message: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None or ws.closed:
            return False
        task = asyncio.ensure_future(ws.send_str(json.dumps(message, separators=(",", ":"))))
        self._sends.add(task)
        task.add_done_callback(self._sent)
        return True

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        if not task.cancelled():
            task.exception()  # a socket that closed meanwhile: no matter (the page retries from its hello)

    async def _keep_seated(self) -> None:
        failures = 0
        said: set[str] = set()  # each reason to retry is logged once, not every 2 s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)) as http:
            while True:
                started, seatings = time.monotonic(), self._seatings
                try:
                    await self._seated(http)
                    reason = "the server closed the connection"
                except SignalingRefused as exc:
                    if not self._ever_seated:
                        if not self.refused.done():
                            self.refused.set_result(str(exc))
                        return
                    reason = self.problem = f"the server refused this desktop: {exc}"
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    reason = f"cannot reach it ({exc or type(exc).__name__})"
                except Exception:  # a bug of ours must not leave the desktop unseated for good without a word
                    logger.exception("signaling: lost the seat on %s", self.url.base)
                    reason = "an error (above)"
                finally:
                    self.connected.clear()
                    self._ws = None
                if self._seatings != seatings:
                    said.clear()  # it was seated meanwhile: news again
                if reason not in said:
                    said.add(reason)
                    logger.warning("signaling: %s: %s; retrying", self.url.base, reason)
                # A seat that held a while starts over from the shortest wait; ±10 % keeps desktops apart.
                failures = 0 if time.monotonic() - started > 10 else failures + 1
                delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, failures - 1))
                await asyncio.sleep(delay * random.uniform(0.9, 1.1))

    async def _seated(self, http: aiohttp.ClientSession) -> None:
        assert self._room is not None and self._handler is not None
        async with http.ws_connect(self.url.websocket, ssl=self._ssl, max_msg_size=MAX_MESSAGE, heartbeat=10) as ws:
            hello: dict[str, Any] = {
                "type": "hello",
                "role": "desktop",
                "room": self._room,
                "token": self._token,
                "name": self._name,
                "max_direct": self._max_direct,
                "seat": self._seat,
            }
            if self.links is not None:
                hello["links"] = self.links
            await ws.send_json(hello)
            first = await ws.receive(timeout=10)
            welcome = _message(first)
            if welcome is None or welcome.get("type") != "welcome":
                reason = welcome.get("reason") if welcome is not None and welcome.get("type") == "refused" else None
                raise SignalingRefused(str(reason)[:200] if reason else "no welcome")
            self._ws = ws
            self._ever_seated = True
            self._seatings += 1
            self.problem = None
            self.connected.set()
            logger.info("signaling: joined %s as %r", self.url.base, self._name)
            reports = asyncio.ensure_future(self._report())
            try:
                async for msg in ws:
                    message = _message(msg)
                    if message is None:
                        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            break
                        logger.warning("signaling: dropped a malformed message from the server")
                    elif message.get("type") in ("join", "answer", "leave"):
                        self._handler(message)
                    else:
                        logger.warning("signaling: dropped a %r message from the server", str(message.get("type"))[:40])
            finally:
                reports.cancel()
                await asyncio.wait({reports})  # (never swallows a cancellation of our own, as awaiting it would)

    async def _report(self) -> None:
        """``status`` when it changes (and every few seconds), a ``thumbnail`` every few seconds when it changed."""
        said: dict[str, Any] | None = None
        said_at = 0.0
        shown: bytes | None = None
        shown_at = -THUMBNAIL_EVERY_S
        while True:
            now = time.monotonic()
            if self.status is not None:
                status = self.status()
                figures = {k: v for k, v in status.items() if k != "uptime"}
                if figures != said or now - said_at >= STATUS_EVERY_S:
                    self._send_now({"type": "status", **status})
                    said, said_at = figures, now
            if self.thumbnail is not None and now - shown_at >= THUMBNAIL_EVERY_S:
                shown_at = now
                picture = await self.thumbnail()
                if picture is not None and picture != shown:
                    data = base64.b64encode(picture).decode("ascii")
                    if self._send_now({"type": "thumbnail", "mime": "image/jpeg", "data": data}):
                        shown = picture
            await asyncio.sleep(STATUS_CHECK_S)


def _message(msg: aiohttp.WSMessage) -> dict[str, Any] | None:
    if msg.type != aiohttp.WSMsgType.TEXT:
        return None
    try:
        message = json.loads(msg.data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
