"""The ``FrameSource`` interface: where pictures of a shared surface come from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from impromptu.errors import CaptureError


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured picture: tightly packed BGRA rows, ``width * 4`` bytes each."""

    data: bytes | bytearray | memoryview
    width: int
    height: int
    capture_us: int


class SurfaceResized(CaptureError):
    """The surface changed size while it was being grabbed: ``size`` is the new one, and the next grab fits it."""


class SurfaceRenamed(CaptureError):
    """The surface's title changed (a window's ``_NET_WM_NAME`` or ``WM_NAME``): ``title`` is the new one. Nothing
    else changed: the next grab returns a frame as before."""

    def __init__(self, title: str) -> None:
        super().__init__(f"the title is now {title!r}")
        self.title = title


class SurfacePaused(CaptureError):
    """The surface shows nothing for now (a window unmapped or minimised): nothing to grab until ``changed()``
    turns true again."""


class SurfaceGone(CaptureError):
    """The surface no longer exists (a window was destroyed): the source will never grab again."""


class FrameSource(Protocol):
    """Grabs pictures of one surface. Used from a single worker thread, which also creates it.

    ``grab`` raises, besides a plain ``CaptureError`` for a failure:

    - ``SurfaceResized`` once after the surface changed size: ``size`` already has the new one (a new encoder is
      due), and the next ``grab`` returns a frame of that size;
    - ``SurfaceRenamed`` once after the surface's title changed (window sources only; also while it is paused, so
      that viewers' tabs follow): ``title`` is the new one;
    - ``SurfacePaused`` while the surface shows nothing (a window unmapped or minimised). ``changed()`` stays false
      meanwhile and turns true when there is something to show again, and the next ``grab`` returns a frame;
    - ``SurfaceGone`` when the surface has ended (a window destroyed): for good, the source should be closed.
    """

    @property
    def size(self) -> tuple[int, int]:
        """Width and height of the pictures ``grab`` returns (both even)."""

    def fileno(self) -> int | None:
        """A descriptor that turns readable when the surface may have changed, or ``None`` if the source
        cannot tell (then ``changed`` is always true and the caller polls at its frame rate)."""

    def changed(self) -> bool:
        """Whether the surface may have changed since the last ``grab`` (cheap; no pixels are read)."""

    def grab(self) -> Frame:
        """Read the surface's current pixels; ``SurfaceResized``, ``SurfacePaused`` or ``SurfaceGone`` as above."""

    def close(self) -> None:
        """Release the source (idempotent)."""


class WindowFrameSource(FrameSource, Protocol):
    """A ``FrameSource`` of one window, which also knows where the window is on the screen."""

    @property
    def position(self) -> tuple[int, int]:
        """Where the window's top-left pixel (of its pictures) is on the screen, as last seen; safe to read from
        another thread."""
