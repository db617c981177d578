"""X11 screen capture: pixels through mss (XShmGetImage), change detection through the DAMAGE extension.

DAMAGE tells us when anything was drawn, so an idle desktop costs one poll of the X socket per tick and no
grab at all. Without DAMAGE (rare), every tick grabs, and the reason is recorded in ``fallbacks``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import mss
from Xlib import X, error
from Xlib.display import Display
from Xlib.ext import damage

from impromptu.capture.base import Frame, SurfaceResized
from impromptu.errors import CaptureError

logger = logging.getLogger(__name__)


class X11ScreenSource:
    """The whole screen of an X display."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.fallbacks: list[str] = []
        try:
            self._x = Display(display)
        except (error.DisplayError, error.ConnectionClosedError, OSError) as exc:
            raise CaptureError(f"cannot open X display {display}: {exc}") from exc
        try:
            self._mss = mss.MSS(display=display)
        except Exception as exc:
            self._x.close()
            raise CaptureError(f"cannot capture X display {display}: {exc}") from exc
        try:
            self._setup()
        except (error.XError, error.ConnectionClosedError, OSError) as exc:
            self._mss.close()
            self._x.close()
            raise CaptureError(f"cannot watch X display {display} for changes: {exc}") from exc
        self._dirty = True
        self._closed = False

    def _setup(self) -> None:
        self.fallbacks.extend(self._mss.performance_status)
        root = self._x.screen().root
        self._root_id = root.id
        # ConfigureNotify on the root window tells us when the screen is resized (RandR).
        root.change_attributes(event_mask=X.StructureNotifyMask)
        geometry = root.get_geometry()
        self._set_size(geometry.width, geometry.height)
        self._damage: int | None = None
        if self._x.query_extension("DAMAGE") is not None:
            self._x.damage_query_version()
            self._damage = root.damage_create(damage.DamageReportNonEmpty)
            self._x.sync()
        else:
            self.fallbacks.append("no DAMAGE extension: grabbing every tick")

    def _set_size(self, width: int, height: int) -> None:
        # Encoders want even sizes: leave out an odd last row or column.
        self._width = width & ~1
        self._height = height & ~1
        self._monitor = {"left": 0, "top": 0, "width": self._width, "height": self._height}

    def _resized(self, width: int, height: int) -> None:
        logger.info("display %s is now %dx%d", self.display, width, height)
        # mss sized its shared-memory segment for the old screen: a new grabber gets one that fits.
        self._mss.close()
        try:
            self._mss = mss.MSS(display=self.display)
        except Exception as exc:
            raise CaptureError(f"cannot capture X display {self.display} after it was resized: {exc}") from exc
        self._set_size(width, height)
        self._dirty = True

    @property
    def size(self) -> tuple[int, int]:
        """The size of the pictures; it changes when the screen is resized (seen by ``changed()``)."""
        return self._width, self._height

    def fileno(self) -> int | None:
        return self._x.fileno() if self._damage is not None else None

    def changed(self) -> bool:
        while self._x.pending_events():
            event: Any = self._x.next_event()
            if event.type == X.ConfigureNotify and event.window.id == self._root_id:
                if (event.width & ~1, event.height & ~1) != self.size:
                    self._resized(event.width, event.height)
            elif self._damage is not None and event.type == self._x.extension_event.DamageNotify:
                self._dirty = True
        return self._dirty or self._damage is None

    def grab(self) -> Frame:
        if self._damage is not None:
            # Subtract before reading, so drawing that happens during the grab raises a new notification.
            self._x.damage_subtract(self._damage)
            self._x.flush()
            self._dirty = False
        capture_us = time.time_ns() // 1000
        try:
            shot = self._mss.grab(self._monitor)
        except Exception as exc:
            # A screen shrunk by RandR between our last look and this grab makes the grab fail (BadMatch): that is
            # a resize, not a failure.
            try:
                geometry = self._x.screen().root.get_geometry()
            except (error.XError, error.ConnectionClosedError, OSError):
                geometry = None
            if geometry is not None and (geometry.width & ~1, geometry.height & ~1) != self.size:
                self._resized(geometry.width, geometry.height)
                raise SurfaceResized(f"{self.display} is now {self._width}x{self._height}") from exc
            raise CaptureError(f"screen grab of {self.display} failed: {exc}") from exc
        return Frame(shot.raw, self._width, self._height, capture_us)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._mss.close()
        try:
            if self._damage is not None:
                self._x.damage_destroy(self._damage)
            self._x.close()
        except (error.ConnectionClosedError, OSError):
            pass
