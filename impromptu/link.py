"""Links and the keys they carry (docs/protocol.md §1).

The secret lives only in the URL fragment. The signaling server sees the room id, derived one-way from the view
key, and can neither join as the desktop nor forge the MACs that bind each SDP (and so each DTLS fingerprint) to
a holder of the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


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
        return b64url(_hmac(self.view, "impromptu/room"))[:22]

    def control_fragment(self) -> str:
        return f"c={b64url(self.control)}"

    def offer_mac(self, peer: str, sdp: str) -> str:
        return b64url(_hmac(self.view, f"impromptu/offer\n{peer}\n{sdp}"))

    def answer_role(self, peer: str, sdp: str, mac: str) -> Role | None:
        """Which role the key that MACed this answer grants, or ``None`` if no key of ours did."""
        for role, key in ((Role.CONTROL, self.control), (Role.VIEW, self.view)):
            expected = b64url(_hmac(key, f"impromptu/answer\n{peer}\n{sdp}"))
            if hmac.compare_digest(expected, mac):
                return role
        return None

    @staticmethod
    def answer_mac(key: bytes, peer: str, sdp: str) -> str:
        return b64url(_hmac(key, f"impromptu/answer\n{peer}\n{sdp}"))
