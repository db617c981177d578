"""The desktop's view of viewers it reaches through relays (docs/protocol.md §7).

Relays report which viewers they serve (``relay.viewers``) and pass up their ``relayed`` envelopes. This opens
each envelope — its sender must be one that relay reported, it must open under ``Kc`` (impromptu/envelope.py),
its sequence number must grow — so that a relay, which may hold only ``Kv``, can neither read, forge nor replay
input, and it remembers which relayed viewers proved they hold the control link.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from impromptu import envelope
from impromptu.link import LinkKeys, Role

logger = logging.getLogger(__name__)

MAX_REPORTED = 1024
"""Viewers one relay may report."""
MAX_SENDERS = 4096
RELAYED_TYPES = frozenset(
    {"control.hello", "control.request", "control.release", "input.move", "input.button", "input.wheel",
     "input.key", "input.release"}
)  # fmt: skip


@dataclass(frozen=True)
class Relayed:
    """One envelope that passed every check: ``message`` from ``sender``, who holds the control link."""

    sender: str
    message: dict[str, Any]
    first: bool
    """The first envelope of this sender's to open: it has just proved it holds the control link."""


def parse_report(message: dict[str, Any]) -> list[str] | None:
    """The peer ids of a ``relay.viewers``, or ``None`` if it is malformed."""
    peers = message.get("peers")
    if not isinstance(peers, list) or len(peers) > MAX_REPORTED:
        return None
    if not all(isinstance(p, str) and 0 < len(p) <= envelope.MAX_PEER_ID for p in peers):
        return None
    return list(dict.fromkeys(peers))


class RelayedViewers:
    def __init__(self, keys: LinkKeys) -> None:
        self._keys = keys
        self._reported: dict[str, set[str]] = {}
        """relay peer id → the viewers it serves (its own and its relays')."""
        self._seen: OrderedDict[str, int] = OrderedDict()
        """sender → the last sequence number accepted, most recent last. Only senders whose envelope opened get
        here — they hold ``Kc``, wherever they are placed later — so only as many as there were control viewers
        behind relays; past 4096 the longest silent is forgotten (and its old envelopes could be replayed by a
        relay: a limit, stated in the protocol)."""

    def everyone(self) -> set[str]:
        return set().union(*self._reported.values()) if self._reported else set()

    def count(self) -> tuple[int, int]:
        """(relayed viewers, of which control) over every relay."""
        everyone = self.everyone()
        return len(everyone), sum(1 for peer in everyone if peer in self._seen)

    def roles(self, relay: str) -> dict[str, str]:
        """What a relay passes on in ``presence.relayed``."""
        return {
            peer: (Role.CONTROL if peer in self._seen else Role.VIEW).value
            for peer in sorted(self._reported.get(relay, ()))
        }

    def report(self, relay: str, message: dict[str, Any], direct: Collection[str]) -> set[str] | None:
        """A relay's ``relay.viewers``. Returns the viewers no relay serves any more (to release what they held),
        or ``None`` when nothing changed or the report is malformed (dropped). Ids of the desktop's own viewers
        (``direct``) are ignored: a relay cannot speak for them."""
        peers = parse_report(message)
        if peers is None:
            logger.warning("relay %s: dropped a malformed relay.viewers", relay)
            return None
        new = set(peers) - {relay} - set(direct)
        old = self._reported.get(relay, set())
        if new == old:
            return None
        self._reported[relay] = new
        return old - self.everyone()

    def relay_closed(self, relay: str) -> set[str]:
        """The desktop's connection to a relay ended: the viewers behind it that no other relay serves (those
        placed elsewhere meanwhile keep their place, and control if they hold it)."""
        gone = self._reported.pop(relay, set())
        return gone - self.everyone()

    def open(self, relay: str, message: dict[str, Any]) -> Relayed | None:
        """Check a ``relayed`` message that arrived from ``relay``; ``None`` (logged) if it fails any check."""
        sealed = envelope.parse(message)
        if sealed is None:
            logger.warning("relay %s: dropped a malformed relayed envelope", relay)
            return None
        who = sealed.sender[:16]
        if sealed.sender not in self._reported.get(relay, ()):
            logger.warning("relay %s: dropped an envelope from %s, a viewer it does not serve", relay, who)
            return None
        if sealed.seq <= self._seen.get(sealed.sender, 0):
            logger.warning("relay %s: dropped a replayed envelope from %s (seq %d)", relay, who, sealed.seq)
            return None
        text = envelope.open_sealed(self._keys.control, sealed)
        if text is None:
            logger.warning("relay %s: dropped an envelope from %s that was not sealed with Kc", relay, who)
            return None
        try:
            inner = json.loads(text) if len(text.encode()) <= envelope.MAX_MESSAGE else None
        except (ValueError, RecursionError):
            inner = None
        if not isinstance(inner, dict) or inner.get("type") not in RELAYED_TYPES:
            logger.warning("relay %s: dropped an envelope from %s with no message it may carry", relay, who)
            return None
        first = sealed.sender not in self._seen
        self._seen[sealed.sender] = sealed.seq
        self._seen.move_to_end(sealed.sender)
        while len(self._seen) > MAX_SENDERS:
            self._seen.popitem(last=False)
        return Relayed(sealed.sender, inner, first)
