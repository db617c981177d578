"""Who may send input (docs/protocol.md §5): every control-link viewer, or — with ``--one-controller`` — one of
them at a time, handed over by request and release."""

from __future__ import annotations

from enum import Enum

from impromptu.link import Role


class ControlMode(Enum):
    SHARED = "shared"
    """Every viewer holding the control link may send input."""
    ONE = "one"
    """One control-link viewer at a time: the holder."""


class ControlFloor:
    """The holder of control and the queue of requests, for ``ControlMode.ONE``.

    Each method returns whether anything viewers are shown changed (so the caller tells them). Only peers with
    ``Role.CONTROL`` ever hold or request control; in ``SHARED`` mode there is no holder and no queue.
    """

    def __init__(self, mode: ControlMode) -> None:
        self.mode = mode
        self.holder: str | None = None
        self.requests: list[str] = []

    def may_input(self, peer: str, role: Role) -> bool:
        if role is not Role.CONTROL:
            return False
        return self.mode is ControlMode.SHARED or self.holder == peer

    def request(self, peer: str, role: Role) -> bool:
        """Take control if nobody holds it, otherwise queue for it."""
        if self.mode is not ControlMode.ONE or role is not Role.CONTROL or peer == self.holder:
            return False
        if self.holder is None:
            self.holder = peer
            return True
        if peer in self.requests:
            return False
        self.requests.append(peer)
        return True

    def release(self, peer: str) -> bool:
        """The holder gives control to the oldest request (or to nobody); anyone else withdraws its request."""
        if peer == self.holder:
            self.holder = self.requests.pop(0) if self.requests else None
            return True
        if peer in self.requests:
            self.requests.remove(peer)
            return True
        return False

    def leave(self, peer: str) -> bool:
        """A viewer went away: as ``release``."""
        return self.release(peer)
