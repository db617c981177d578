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


class FrameSource(Protocol):
    """Grabs pictures of one surface. Used from a single worker thread, which also creates it."""

    @property
    def size(self) -> tuple[int, int]:
        """Width and height of the pictures ``grab`` returns (both even)."""

    def fileno(self) -> int | None:
        """A descriptor that turns readable when the surface may have changed, or ``None`` if the source
        cannot tell (then ``changed`` is always true and the caller polls at its frame rate)."""

    def changed(self) -> bool:
        """Whether the surface may have changed since the last ``grab`` (cheap; no pixels are read)."""

    def grab(self) -> Frame:
        """Read the surface's current pixels; ``SurfaceResized`` if it changed size meanwhile."""

    def close(self) -> None:
        """Release the source (idempotent)."""
