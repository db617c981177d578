"""The ``InputSink`` interface: where viewers' pointer and keyboard input is injected."""

from __future__ import annotations

from typing import Protocol


class InputSink(Protocol):
    """Injects input into one display. Coordinates are absolute, in the display's pixels.

    Methods are called from the asyncio loop thread and must not block for long (an X round trip is fine).
    """

    def move(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)``."""

    def button(self, button: int, down: bool) -> None:
        """Press (``down``) or release X pointer button ``button`` (1 to 7; 4 to 7 are the wheel)."""

    def key(self, code: str, key: str, down: bool) -> None:
        """Press or release the key named by DOM ``KeyboardEvent.code``/``key``; unknown keys are ignored."""

    def close(self) -> None:
        """Release resources (idempotent)."""
