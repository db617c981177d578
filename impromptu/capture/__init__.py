"""Screen capture backends behind the ``FrameSource`` interface, chosen by platform."""

from __future__ import annotations

import sys

from impromptu.capture.base import Frame, FrameSource, SurfaceResized
from impromptu.errors import CaptureError

__all__ = ["Frame", "FrameSource", "SurfaceResized", "open_screen_source"]


def open_screen_source(display: str) -> FrameSource:
    """The capture backend for the whole screen of ``display`` on this platform."""
    if sys.platform.startswith("linux"):
        from impromptu.capture.x11 import X11ScreenSource

        return X11ScreenSource(display)
    raise CaptureError(f"screen capture is not supported on {sys.platform} yet")
