"""The ``relayed`` envelope (docs/protocol.md §7): how a viewer behind relays sends what needs a role.

The message is sealed with AES-256-GCM under ``Ki``, derived from ``Kc``, with the sender's peer id and the
sequence number as associated data. So a relay, which may hold only ``Kv``, can read nothing of it (keystrokes
included), cannot make one, and cannot move one to another sender or number; the desktop refuses numbers that do
not grow. Relays check only the shape (``parse``) and pass on exactly the known fields.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from impromptu.link import b64url, from_b64url, input_key

MAX_PEER_ID = 256
MAX_SEQ = 2**53 - 1
"""JavaScript's largest safe integer: pages count in doubles."""
MAX_MESSAGE = 4096
"""UTF-8 bytes of the sealed message."""
MAX_BOX = (MAX_MESSAGE + 16) * 4 // 3 + 4
"""base64url characters of the sealed message and its 16-byte tag."""
IV_RE = re.compile(r"^[A-Za-z0-9_-]{16}$")
"""12 bytes, base64url."""
BOX_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Envelope:
    sender: str
    seq: int
    iv: str
    box: str

    def message(self) -> dict[str, Any]:
        """What a relay passes upstream: the known fields only, whatever else came with them."""
        return {"type": "relayed", "from": self.sender, "seq": self.seq, "iv": self.iv, "box": self.box}


def parse(message: dict[str, Any]) -> Envelope | None:
    """The envelope in a ``relayed`` message, or ``None`` if any field is missing, mistyped or out of bounds."""
    sender, seq, iv, box = (message.get(k) for k in ("from", "seq", "iv", "box"))
    if not isinstance(sender, str) or not 0 < len(sender) <= MAX_PEER_ID:
        return None
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq <= MAX_SEQ:
        return None
    if not isinstance(iv, str) or not IV_RE.match(iv):
        return None
    if not isinstance(box, str) or not 0 < len(box) <= MAX_BOX or not BOX_RE.match(box):
        return None
    return Envelope(sender, seq, iv, box)


def _aad(sender: str, seq: int) -> bytes:
    return f"impromptu/input\n{sender}\n{seq}".encode()


def seal(control_key: bytes, sender: str, seq: int, text: str, iv: bytes | None = None) -> Envelope:
    """Seal ``text`` (one page → desktop message as JSON) from ``sender``; ``iv`` is random unless given (tests)."""
    nonce = secrets.token_bytes(12) if iv is None else iv
    box = AESGCM(input_key(control_key)).encrypt(nonce, text.encode("utf-8"), _aad(sender, seq))
    return Envelope(sender, seq, b64url(nonce), b64url(box))


def open_sealed(control_key: bytes, envelope: Envelope) -> str | None:
    """The message sealed in ``envelope``, or ``None`` if it was not sealed under this ``Kc`` for its sender and
    number (or was altered)."""
    try:
        nonce, box = from_b64url(envelope.iv), from_b64url(envelope.box)
        plain = AESGCM(input_key(control_key)).decrypt(nonce, box, _aad(envelope.sender, envelope.seq))
        return plain.decode("utf-8")
    except (ValueError, InvalidTag):
        return None
