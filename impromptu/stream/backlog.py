"""How far a viewer of a fanned-out stream may fall behind, and what happens when it does (docs/protocol.md §6).

Shared by the desktop's hub, which sends whole frames, and a relay's forwarder, which decides per frame at its first
fragment (§7). ``StreamRate`` turns the stream's recent bitrate into the bytes a viewer may have waiting;
``Backlog`` is one viewer's standing against that limit: it starts each surface at a keyframe, skips frames while
the viewer is behind, and resumes it at a keyframe once it has drained, counting what it missed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

MAX_LAG_S = 0.5
MIN_BUFFERED = 1024 * 1024
"""Twice the largest keyframe the encoder makes (its VBV buffer is 4000 kbit): one keyframe never makes a viewer
behind on its own."""
MAX_BUFFERED = 4 * 1024 * 1024
RATE_WINDOW_S = 2.0
"""The bitrate that turns ``MAX_LAG_S`` into bytes is measured over this long."""


class VideoSink(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def buffered_amount(self) -> int: ...

    def send_video(self, message: bytes) -> None: ...

    def notify_drained(self, threshold: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the bytes waiting fall to ``threshold`` (``bufferedamountlow``)."""


class StreamRate:
    """The stream's bitrate over the last ``RATE_WINDOW_S``, and the backlog it allows a viewer."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._recent: deque[tuple[float, int]] = deque()
        self._recent_bytes = 0

    def measure(self, size: int) -> None:
        """``size`` bytes of the stream went out now."""
        now = self._clock()
        self._recent.append((now, size))
        self._recent_bytes += size
        while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent_bytes -= self._recent.popleft()[1]

    def limit(self) -> int:
        """The bytes a viewer may have waiting before it counts as behind: ``MAX_LAG_S`` of the stream, within
        ``MIN_BUFFERED`` and ``MAX_BUFFERED``."""
        rate = self._recent_bytes / RATE_WINDOW_S
        return int(min(MAX_BUFFERED, max(MIN_BUFFERED, rate * MAX_LAG_S)))


class Backlog:
    """One viewer's standing in the stream: which surfaces it has started on, whether it is behind, what it missed.

    ``caught_up(backlog)`` is called when a viewer that was behind may resume, to ask for the keyframe it resumes on:
    from ``admit`` once it has drained, and from its sink's ``notify_drained`` (so also while nothing new comes). It
    is the owner's to check that this viewer is still one of its own. ``log`` is the owner's logger.
    """

    __slots__ = (
        "_caught_up",
        "_log",
        "behind",
        "dropped_total",
        "sent_total",
        "sink",
        "skipped",
        "skipped_total",
        "started",
    )

    def __init__(self, sink: VideoSink, caught_up: Callable[[Backlog], None], log: logging.Logger) -> None:
        self.sink = sink
        self._caught_up = caught_up
        self._log = log
        self.behind = False
        self.started: set[int] = set()
        """Surfaces on which this viewer got a keyframe and has not missed a frame since."""
        self.skipped: dict[int, int] = {}
        """Per surface, frames skipped since the viewer fell behind (not those before its first keyframe)."""
        self.skipped_total = 0
        self.sent_total = 0
        """Frames admitted (statistics, protocol.md §10)."""
        self.dropped_total = 0
        """Frames skipped because the viewer was behind, counted as they are skipped (statistics)."""

    def admit(self, surface: int, keyframe: bool, limit: int) -> bool:
        """Whether the viewer gets this new frame of ``surface``, with ``limit`` from ``StreamRate.limit()``. A frame
        it gets may end a run of skipped ones: ``take_skipped`` says how many."""
        buffered = self.sink.buffered_amount
        if buffered > limit or (self.behind and buffered > limit // 4):
            if not self.behind:
                self._log.info("viewer %s is behind: skipping frames until it catches up", self.sink.id)
                # Nothing new may come while the screen is still: the drain itself asks for the keyframe that gets
                # the viewer going again.
                self.sink.notify_drained(limit // 4, self._drained)
            self.behind = True
            self.started.clear()
            self.skipped[surface] = self.skipped.get(surface, 0) + 1
            self.dropped_total += 1
            return False
        if self.behind:
            # Caught up: a keyframe (one per surface) gets it going again, asked for once, not on every skipped frame.
            self.behind = False
            self._caught_up(self)
        if surface not in self.started:
            if not keyframe:
                if self.skipped.get(surface):
                    self.skipped[surface] += 1  # after falling behind; before the first keyframe, nothing is missed
                    self.dropped_total += 1
                return False
            self.started.add(surface)
        self.sent_total += 1
        return True

    def take_skipped(self, surface: int) -> int:
        """The frames of ``surface`` skipped before the one just admitted (0 if none), now counted as reported."""
        skipped = self.skipped.pop(surface, 0)
        self.skipped_total += skipped
        return skipped

    def _drained(self) -> None:
        if self.behind:
            self._caught_up(self)  # the next frame finds it drained and resumes it on that keyframe
