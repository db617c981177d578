"""``WindowInput``: input confined to one shared window (protocol.md §8).

Coordinates are the window's own pixels; they land at the window's place on the screen as the X server has it
when the event is injected (asked on the injecting connection, not remembered: a window moved or shrunk a moment
ago must not make a click land beside it), kept inside the window. Before the pointer moves, a button goes down
(a click, a wheel notch) or a key, the window is raised and given the keyboard focus on the same X connection
that injects the event, so the X server handles the two in that order: XTEST events go to the window under the
pointer and to the focused window, and without this a window overlapping the shared one, or one that took the
focus meanwhile, would get them — even a hover's motion and crossing events.
"""

from __future__ import annotations

from typing import Protocol

from ..errors import InputError
from .base import InputSink

__all__ = ["FocusingSink", "WindowInput"]


class FocusingSink(InputSink, Protocol):
    """An ``InputSink`` that can also place points in a window, and raise it and give it the keyboard focus."""

    def window_point(self, window_id: int, x: int, y: int) -> tuple[int, int] | None:
        """Where ``(x, y)`` of the window is on the screen now, kept inside it; ``None`` if it is gone."""

    def raise_and_focus(self, window_id: int) -> None:
        """Raise window ``window_id`` to the top and focus it, before any input injected afterwards."""


class WindowInput:
    """An ``InputSink`` for one window's surface, on top of the display's ``sink`` (shared, not owned: ``close``
    leaves it open)."""

    def __init__(self, sink: FocusingSink, window_id: int) -> None:
        self._sink = sink
        self.window_id = window_id

    def move(self, x: int, y: int) -> None:
        point = self._sink.window_point(self.window_id, x, y)
        if point is None:
            raise InputError(f"window {self.window_id:#x} is gone")
        self._sink.raise_and_focus(self.window_id)
        self._sink.move(*point)

    def button(self, button: int, down: bool) -> None:
        if down:
            self._sink.raise_and_focus(self.window_id)
        self._sink.button(button, down)

    def key(self, code: str, key: str, down: bool) -> None:
        if down:
            self._sink.raise_and_focus(self.window_id)
        self._sink.key(code, key, down)

    def close(self) -> None:
        """Nothing of its own to release: the display's sink is the session's."""
