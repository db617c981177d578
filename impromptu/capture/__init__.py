"""Screen capture backends behind the ``FrameSource`` interface, chosen by platform."""

from __future__ import annotations

import sys

from impromptu.capture.base import (
    Frame,
    FrameSource,
    SurfaceGone,
    SurfacePaused,
    SurfaceRenamed,
    SurfaceResized,
    WindowFrameSource,
)
from impromptu.errors import CaptureError

__all__ = [
    "Frame",
    "FrameSource",
    "SurfaceGone",
    "SurfacePaused",
    "SurfaceRenamed",
    "SurfaceResized",
    "WindowFrameSource",
    "open_screen_source",
    "open_window_source",
]


def open_screen_source(display: str) -> FrameSource:
    """The capture backend for the whole screen of ``display`` on this platform."""
    if sys.platform.startswith("linux"):
        from impromptu.capture.x11 import X11ScreenSource

        return X11ScreenSource(display)
    raise CaptureError(f"screen capture is not supported on {sys.platform} yet")


def open_window_source(display: str, window_id: int) -> WindowFrameSource:
    """The capture backend for one window of ``display`` (its own pixels only) on this platform."""
    if sys.platform.startswith("linux"):
        from impromptu.capture.window import X11WindowSource

        return X11WindowSource(display, window_id)
    raise CaptureError(f"window capture is not supported on {sys.platform} yet")
