"""An X client of the tests' own: a window that paints itself and records the events it gets."""

from __future__ import annotations

import select
import subprocess
from typing import Any

from Xlib import X
from Xlib.display import Display


class XWindow:
    """A top-level, override-redirect X window of a test's own, which can paint itself and records events."""

    def __init__(self, display: str, x: int, y: int, w: int, h: int, event_mask: int = 0) -> None:
        self.d = Display(display)
        screen = self.d.screen()
        self.window: Any = screen.root.create_window(
            x, y, w, h, 0, screen.root_depth, override_redirect=True, event_mask=event_mask
        )
        self.size = (w, h)
        self.events: list[Any] = []
        """Every event received so far (a test may clear it)."""
        self.gc = self.window.create_gc()
        self.window.map()
        self.d.sync()

    def fill(self, rgb: int) -> None:
        self.gc.change(foreground=rgb)
        self.window.fill_rectangle(self.gc, 0, 0, *self.size)
        self.d.sync()

    def focus(self) -> None:
        self.window.set_input_focus(X.RevertToParent, X.CurrentTime)
        self.d.sync()

    def wait_events(self, kinds: set[int]) -> list[Any]:
        """The first event of each kind in ``kinds`` among ``events``, reading more for up to 15 s in total."""
        for _ in range(150):
            while self.d.pending_events():
                self.events.append(self.d.next_event())
            seen: dict[int, Any] = {}
            for event in self.events:
                if event.type in kinds:
                    seen.setdefault(event.type, event)
            if set(seen) == kinds:
                return [seen[kind] for kind in sorted(kinds)]
            select.select([self.d.fileno()], [], [], 0.1)
        raise AssertionError(f"saw only {sorted(seen)} of {sorted(kinds)}")

    def close(self) -> None:
        self.window.destroy()
        self.d.close()


def set_mode(display: str, width: int, height: int) -> None:
    """Switch the Xvfb screen to a smaller mode, as a user's `xrandr` would."""
    name = f"{width}x{height}_test"
    modeline = ["63.50", str(width), str(width + 48), str(width + 152), str(width + 304)]
    modeline += [str(height), str(height + 3), str(height + 7), str(height + 30), "-hsync", "+vsync"]
    for args in (["--newmode", name, *modeline], ["--addmode", "screen", name], ["--output", "screen", "--mode", name]):
        subprocess.run(["xrandr", "-display", display, *args], check=True, capture_output=True)
