"""Who connects to whom in one room (docs/protocol.md §7): the desktop at the root, relays below it, viewers at
the leaves. Pure bookkeeping: the server asks it where a page goes and sends the ``join``s it returns.

A page is placed with the desktop while the desktop has fewer direct viewers than its cap, otherwise with the
relay that has the most free places (the one closest to the desktop on a tie), never with itself or a relay
downstream of it; otherwise it waits until a place frees up.
"""

from __future__ import annotations

from dataclasses import dataclass

DESKTOP = "desktop"
"""The upstream of pages connected to the desktop itself (peer ids are hex digits, so never this)."""
MAX_RELAY_CAPACITY = 64


@dataclass
class Seat:
    relay: bool
    capacity: int = 0
    """Viewers a relay has said it will serve; 0 until it is ready (and for plain viewers)."""
    upstream: str | None = None
    """``DESKTOP``, a relay's peer id, or ``None`` while the page waits for a place."""


Assignment = tuple[str, str]
"""(page, its new upstream): the server sends that upstream a ``join`` for the page."""


class RoomTree:
    def __init__(self) -> None:
        self.seats: dict[str, Seat] = {}
        self.desktop = False
        self.max_direct = 0

    def children(self, upstream: str) -> list[str]:
        return [peer for peer, seat in self.seats.items() if seat.upstream == upstream]

    def waiting(self) -> list[str]:
        return [peer for peer, seat in self.seats.items() if seat.upstream is None]

    def add(self, peer: str, *, relay: bool) -> list[Assignment]:
        self.seats[peer] = Seat(relay)
        return self._fill()

    def remove(self, peer: str) -> tuple[str | None, list[str], list[Assignment]]:
        """Forget ``peer``: returns its upstream (to tell it), the pages it served (now without one), and where
        those and any other waiting pages go now."""
        seat = self.seats.pop(peer, None)
        if seat is None:
            return None, [], []
        orphans = self.children(peer)
        for orphan in orphans:
            self.seats[orphan].upstream = None
        return seat.upstream, orphans, self._fill()

    def set_capacity(self, peer: str, viewers: int) -> list[Assignment]:
        """A relay's ``capacity`` (``0 ≤ viewers ≤ MAX_RELAY_CAPACITY``, checked by the caller)."""
        seat = self.seats.get(peer)
        if seat is None or not seat.relay or seat.capacity == viewers:
            return []  # nothing changes: not worth a pass over the room
        seat.capacity = viewers
        return self._fill()

    def desktop_joined(self, max_direct: int) -> list[Assignment]:
        self.desktop = True
        self.max_direct = max_direct
        return self._fill()

    def desktop_left(self) -> list[str]:
        """The desktop's own viewers, now waiting (those behind relays stay with their relays)."""
        self.desktop = False
        direct = self.children(DESKTOP)
        for peer in direct:
            self.seats[peer].upstream = None
        return direct

    def _fill(self) -> list[Assignment]:
        # Relays first: placing one makes room for others.
        order = sorted(self.waiting(), key=lambda peer: not self.seats[peer].relay)
        placed: list[Assignment] = []
        for peer in order:
            upstream = self._choose(peer)
            if upstream is not None:
                self.seats[peer].upstream = upstream
                placed.append((peer, upstream))
        return placed

    def _choose(self, peer: str) -> str | None:
        if self.desktop and len(self.children(DESKTOP)) < self.max_direct:
            return DESKTOP
        best: tuple[int, int] | None = None
        chosen: str | None = None
        for candidate, seat in self.seats.items():
            if not seat.relay or seat.upstream is None or candidate == peer:
                continue
            free = seat.capacity - len(self.children(candidate))
            if free <= 0:
                continue
            depth = self._depth_unless_below(candidate, peer)
            if depth is None:
                continue
            rank = (-free, depth)
            if best is None or rank < best:
                best, chosen = rank, candidate
        return chosen

    def _depth_unless_below(self, candidate: str, peer: str) -> int | None:
        """How many hops ``candidate`` is from the desktop, or ``None`` if it is downstream of ``peer`` (placing
        ``peer`` there would make a loop) or not connected to the desktop at all."""
        depth = 0
        node: str | None = candidate
        while node is not None and node != DESKTOP:
            if node == peer or depth > len(self.seats):
                return None
            node = self.seats[node].upstream if node in self.seats else None
            depth += 1
        return depth if node == DESKTOP else None
