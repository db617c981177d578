"""What a desktop needs of signaling, wherever the server is: a seat in its room (docs/protocol.md §2, §11)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

DesktopHandler = Callable[[dict[str, Any]], None]
"""Gets the server's ``join``, ``answer`` and ``leave`` for the room."""


class DesktopSeat(Protocol):
    def send(self, message: dict[str, Any]) -> None:
        """An ``offer`` or a ``reject`` to one page."""

    def detach(self) -> None:
        """Leave the room."""


class DesktopSignaling(Protocol):
    """An embedded server (in-process) or a standalone one (over its websocket)."""

    def attach_desktop(self, room: str, handler: DesktopHandler, max_direct: int) -> DesktopSeat: ...
