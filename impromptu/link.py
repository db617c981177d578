"""Links and the keys they carry (docs/protocol.md §1).

The secret lives only in the URL fragment. The signaling server sees the room id, derived one-way from the view
key, and can neither join as the desktop nor forge the MACs that bind each SDP (and so each DTLS fingerprint) to
a holder of the key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit, urlunsplit


def link_host(host: str) -> str:
    """The host to put in a link to a server bound to ``host``: a wildcard bind is reached through one of this
    machine's addresses, an IPv6 address goes in brackets."""
    if host in ("0.0.0.0", "::", ""):
        from impromptu.rtc.ice import lan_addresses  # (aiortc: only when needed)

        addresses = lan_addresses()
        host = addresses[0] if addresses else "127.0.0.1"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    """Decode base64url with or without padding; ``ValueError`` for anything else."""
    if not text or any(c not in _B64URL for c in text.rstrip("=")):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def _room(view_key: bytes) -> str:
    return b64url(_hmac(view_key, "impromptu/room"))[:22]


def _offer_mac(view_key: bytes, peer: str, sdp: str) -> str:
    return b64url(_hmac(view_key, f"impromptu/offer\n{peer}\n{sdp}"))


def input_key(control_key: bytes) -> bytes:
    """``Ki``, the AES-256-GCM key of ``relayed`` envelopes (docs/protocol.md §7): only ``Kc`` holders have it."""
    return _hmac(control_key, "impromptu/input")


def _same(a: str, b: str) -> bool:
    """Constant-time comparison of two texts that may hold anything (``compare_digest`` refuses non-ASCII str)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


class Role(Enum):
    CONTROL = "control"
    VIEW = "view"


@dataclass(frozen=True)
class LinkKeys:
    """The control key and everything derived from it."""

    control: bytes

    @classmethod
    def generate(cls) -> LinkKeys:
        return cls(secrets.token_bytes(32))

    @property
    def view(self) -> bytes:
        return _hmac(self.control, "impromptu/view")

    @property
    def room(self) -> str:
        return _room(self.view)

    def control_fragment(self) -> str:
        return f"c={b64url(self.control)}"

    def view_fragment(self) -> str:
        return f"v={b64url(self.view)}"

    def offer_mac(self, peer: str, sdp: str) -> str:
        return _offer_mac(self.view, peer, sdp)

    def metrics_token(self) -> str:
        """The bearer token of ``/metrics`` when no ``--metrics-token`` is given: derived from ``Kc``, so only the
        control link's holders (and whoever the desktop's user hands it to) can read the figures."""
        return b64url(_hmac(self.control, "impromptu/metrics"))

    def answer_role(self, peer: str, sdp: str, mac: str) -> Role | None:
        """Which role the key that MACed this answer grants, or ``None`` if no key of ours did."""
        for role, key in ((Role.CONTROL, self.control), (Role.VIEW, self.view)):
            expected = b64url(_hmac(key, f"impromptu/answer\n{peer}\n{sdp}"))
            if _same(expected, mac):
                return role
        return None

    @staticmethod
    def answer_mac(key: bytes, peer: str, sdp: str) -> str:
        return b64url(_hmac(key, f"impromptu/answer\n{peer}\n{sdp}"))


@dataclass(frozen=True)
class ViewerLink:
    """What a viewer knows from a link: where the desktop's page is, and the key its fragment carries."""

    base_url: str
    """``http(s)://host:port`` of the page and signaling server, without path or fragment."""
    role: Role
    key: bytes
    """``Kc`` for a control link, ``Kv`` for a view-only one: it MACs this viewer's answers."""

    @classmethod
    def parse(cls, url: str) -> ViewerLink:
        """``http://127.0.0.1:8080/#c=…`` or ``…/#v=…`` → a ``ViewerLink``; ``ValueError`` says what is wrong."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            shown = url.partition("#")[0]  # never the key
            raise ValueError(f"{shown!r} is not an impromptu link (http[s]://HOST:PORT/#c=… or #v=…)")
        name, sep, value = parts.fragment.partition("=")
        if not sep or name not in ("c", "v"):
            raise ValueError("the link has no key: copy the whole link, including everything after the #")
        try:
            key = from_b64url(value)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValueError(f"the link is damaged: the key after #{name}= is not 32 bytes of base64url")
        return cls(
            urlunsplit((parts.scheme, parts.netloc, "", "", "")), Role.CONTROL if name == "c" else Role.VIEW, key
        )

    @property
    def view_key(self) -> bytes:
        return LinkKeys(self.key).view if self.role is Role.CONTROL else self.key

    @property
    def room(self) -> str:
        return _room(self.view_key)

    def check_offer(self, peer: str, sdp: str, mac: str) -> bool:
        return _same(_offer_mac(self.view_key, peer, sdp), mac)

    def answer_mac(self, peer: str, sdp: str) -> str:
        return LinkKeys.answer_mac(self.key, peer, sdp)

    def offer_mac(self, peer: str, sdp: str) -> str:
        """The MAC of an offer made with this link (a relay's, to its own viewers): under ``Kv``, as the desktop's."""
        return _offer_mac(self.view_key, peer, sdp)

    def answer_role(self, peer: str, sdp: str, mac: str) -> Role | None:
        """Which role an answer's MAC proves, among the keys this link holds (a relay checks its viewers' answers
        with it), or ``None`` if none of them made it: a view-only link can verify only ``Kv``."""
        if self.role is Role.CONTROL:
            return LinkKeys(self.key).answer_role(peer, sdp, mac)
        return Role.VIEW if _same(LinkKeys.answer_mac(self.key, peer, sdp), mac) else None
