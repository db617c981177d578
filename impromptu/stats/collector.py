"""The desktop's own figures (docs/protocol.md §10): per surface from its encode worker, per viewer from its
connection, each turned into per-second values once a second.

``SurfaceMeter`` is written by a worker thread (a few appends per frame, under a lock) and read by the loop.
``ViewerMeter`` turns a viewer's counters since it connected into rates over the last second.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["WINDOW_S", "SurfaceMeter", "ViewerMeter"]

WINDOW_S = 1.0
"""Figures are over this last stretch of time."""
_KEEP_S = 2 * WINDOW_S


class SurfaceMeter:
    """One surface's capture and encode figures over the last second.

    The worker calls ``frame`` after each encoded frame, and ``idle_from`` / ``idle_until`` around each wait for the
    surface to change (a wait under way counts too: a still screen is one long wait); the loop calls ``figures``.
    Samples older than two seconds are dropped as new ones come, so memory is bounded by the frame rate.
    """

    def __init__(self, target_fps: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.target_fps = target_fps
        self._clock = clock
        self._lock = threading.Lock()
        self._frames: deque[tuple[float, float, float]] = deque()
        """(end time, capture ms, encode ms) of each frame encoded."""
        self._idle: deque[tuple[float, float]] = deque()
        """(start, end) of each wait with nothing changed on the surface."""
        self._idle_since: float | None = None

    def frame(self, capture_ms: float, encode_ms: float) -> None:
        now = self._clock()
        with self._lock:
            self._frames.append((now, capture_ms, encode_ms))
            while self._frames[0][0] < now - _KEEP_S:
                self._frames.popleft()

    def idle_from(self, started: float) -> None:
        """The worker waits, from ``started`` (this meter's clock), for the surface to change."""
        with self._lock:
            self._idle_since = started

    def idle_until(self, ended: float) -> None:
        """The wait that ``idle_from`` began ended."""
        with self._lock:
            started, self._idle_since = self._idle_since, None
            if started is None or ended <= started:
                return
            self._idle.append((started, ended))
            while self._idle[0][1] < ended - _KEEP_S:
                self._idle.popleft()

    def figures(self) -> dict[str, Any]:
        """``capture_ms`` and ``encode_ms`` (medians per frame, ``None`` without frames), ``fps_encoded``,
        ``frames_unchanged`` (frame intervals per second spent waiting for a change) and ``target_fps``."""
        now = self._clock()
        since = now - WINDOW_S
        with self._lock:
            frames = [f for f in self._frames if f[0] >= since]
            idle = list(self._idle)
            if self._idle_since is not None:
                idle.append((self._idle_since, now))
        idle_s = sum(min(end, now) - max(start, since) for start, end in idle if end > since)
        return {
            "capture_ms": round(statistics.median(f[1] for f in frames), 2) if frames else None,
            "encode_ms": round(statistics.median(f[2] for f in frames), 2) if frames else None,
            "fps_encoded": len(frames),
            "frames_unchanged": round(max(0.0, idle_s) * self.target_fps, 1),
            "target_fps": self.target_fps,
        }


class ViewerMeter:
    """A viewer's counters (totals since it connected) turned into per-second rates between two readings."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._at: float | None = None

    def rates(self, totals: Mapping[str, float]) -> dict[str, float | None]:
        """Each of ``totals`` as its increase per second since the last call (``None`` on the first)."""
        now = self._clock()
        out: dict[str, float | None] = {}
        elapsed = None if self._at is None else now - self._at
        for name, total in totals.items():
            last = self._last.get(name)
            if last is None or elapsed is None or elapsed <= 0:
                out[name] = None
            else:
                out[name] = round(max(0.0, total - last) / elapsed, 1)
            self._last[name] = total
        self._at = now
        return out
