"""The lobby of a standalone signaling server (docs/protocol.md §11): which desktops are online, what each says
about itself (name, size, viewers, uptime, a thumbnail, its links if it publishes them), and the lobby pages that
watch the list. It checks the server's token for both; it never holds a stream."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_NAME = 64
MAX_THUMBNAIL = 40 * 1024
"""The largest thumbnail accepted, decoded."""
THUMBNAIL_TYPES = ("image/jpeg", "image/png", "image/webp")
MAX_DIRECT = 32
SEAT_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
LINK_RE = {
    "control": re.compile(r"^c=[A-Za-z0-9_-]{43}$"),
    "view": re.compile(r"^v=[A-Za-z0-9_-]{43}$"),
}
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")

Send = Callable[[Any, dict[str, Any]], None]
"""Sends one message on a websocket (the server's own, so every send goes through one place)."""


def check_name(name: object) -> str | None:
    """Why ``name`` cannot be a desktop's name, or ``None`` if it can."""
    if not isinstance(name, str) or not name.strip():
        return "the desktop's name is missing"
    if len(name) > MAX_NAME:
        return f"the desktop's name is over {MAX_NAME} characters"
    if _CONTROL_CHARS.search(name):
        return "the desktop's name has control characters"
    return None


def _count(value: object, top: int) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top:
        return value
    return None


@dataclass
class DesktopCard:
    """One desktop in the lobby."""

    room: str
    name: str
    links: dict[str, str] | None
    socket: Any
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    width: int | None = None
    height: int | None = None
    viewers: int | None = None
    surfaces: int | None = None
    uptime: float | None = None
    """As the desktop last said, at ``said_at`` (monotonic)."""
    said_at: float = 0.0
    thumbnail: tuple[str, str] | None = None
    """The latest ``(mime, base64)``."""

    def listing(self, now: float) -> dict[str, Any]:
        uptime = None if self.uptime is None else int(self.uptime + now - self.said_at)
        return {
            "id": self.id,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "viewers": self.viewers,
            "uptime": uptime,
            "surfaces": self.surfaces,
            "links": self.links,
        }


class Lobby:
    """Desktops joined over websockets and the lobby pages watching them."""

    def __init__(self, token: str, send: Send, clock: Callable[[], float] = time.monotonic) -> None:
        self.token = token
        self._send = send
        self._clock = clock
        self._cards: dict[str, DesktopCard] = {}
        self._watchers: set[Any] = set()

    @property
    def cards(self) -> list[DesktopCard]:
        return list(self._cards.values())

    def token_ok(self, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), self.token.encode("utf-8", "surrogatepass")
        )

    def check_desktop(self, hello: dict[str, Any]) -> str | None:
        """Why this desktop's ``hello`` is refused, or ``None``: the token first (say nothing else to a stranger),
        then each field."""
        if not self.token_ok(hello.get("token")):
            return "wrong token"
        if (reason := check_name(hello.get("name"))) is not None:
            return reason
        if not isinstance(hello.get("seat"), str) or not SEAT_RE.match(hello["seat"]):
            return "the seat secret must be 22 to 64 characters of base64url"
        max_direct = hello.get("max_direct", MAX_DIRECT)
        if _count(max_direct, MAX_DIRECT) is None or max_direct < 1:
            return f"max_direct must be 1 to {MAX_DIRECT}"
        links = hello.get("links")
        if links is not None and not (
            isinstance(links, dict)
            and set(links) == set(LINK_RE)
            and all(isinstance(links[k], str) and LINK_RE[k].match(links[k]) for k in LINK_RE)
        ):
            return 'links must be {"control": "c=…", "view": "v=…"}'
        return None

    def add(self, room: str, hello: dict[str, Any], socket: Any) -> DesktopCard:
        links = hello.get("links")
        card = DesktopCard(room, hello["name"].strip(), dict(links) if links else None, socket)
        self._cards[card.id] = card
        self._broadcast_list()
        return card

    def remove(self, socket: Any) -> DesktopCard | None:
        """Take the card of the desktop on ``socket`` off the list (and return it)."""
        card = next((c for c in self._cards.values() if c.socket is socket), None)
        if card is not None:
            del self._cards[card.id]
            self._broadcast_list()
        return card

    def status(self, card: DesktopCard, message: dict[str, Any]) -> None:
        """A desktop's ``status``: kept, and sent to the lobbies when more than its uptime changed."""
        figures = {
            "width": _count(message.get("width"), 1 << 16),
            "height": _count(message.get("height"), 1 << 16),
            "viewers": _count(message.get("viewers"), 1 << 16),
            "surfaces": _count(message.get("surfaces"), 1 << 16),
        }
        uptime = message.get("uptime")
        if not isinstance(uptime, (int, float)) or isinstance(uptime, bool) or not 0 <= uptime < 1e10:
            uptime = None
        before = (card.width, card.height, card.viewers, card.surfaces, card.uptime is None)
        for name, value in figures.items():
            setattr(card, name, value)
        card.uptime, card.said_at = uptime, self._clock()
        if before != (card.width, card.height, card.viewers, card.surfaces, card.uptime is None):
            self._broadcast_list()

    def thumbnail(self, card: DesktopCard, message: dict[str, Any]) -> bool:
        """A desktop's ``thumbnail``: kept and sent on if it is a small image; ``False`` (dropped) otherwise."""
        mime, data = message.get("mime"), message.get("data")
        if mime not in THUMBNAIL_TYPES or not isinstance(data, str) or len(data) > MAX_THUMBNAIL * 4 // 3 + 4:
            return False
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return False
        if not decoded or len(decoded) > MAX_THUMBNAIL:
            return False
        assert isinstance(mime, str)
        card.thumbnail = (mime, data)
        for ws in self._watchers:
            self._send(ws, self._thumbnail_message(card))
        return True

    def watch(self, ws: Any) -> None:
        """A lobby page that presented the token: the list and every thumbnail at once, then each change."""
        self._watchers.add(ws)
        self._send(ws, self._list_message())
        for card in self._cards.values():
            if card.thumbnail is not None:
                self._send(ws, self._thumbnail_message(card))

    def unwatch(self, ws: Any) -> None:
        self._watchers.discard(ws)

    def _list_message(self) -> dict[str, Any]:
        now = self._clock()
        return {"type": "desktops", "desktops": [card.listing(now) for card in self._cards.values()]}

    @staticmethod
    def _thumbnail_message(card: DesktopCard) -> dict[str, Any]:
        assert card.thumbnail is not None
        mime, data = card.thumbnail
        return {"type": "thumbnail", "id": card.id, "mime": mime, "data": data}

    def _broadcast_list(self) -> None:
        if self._watchers:
            message = self._list_message()
            for ws in self._watchers:
                self._send(ws, message)
