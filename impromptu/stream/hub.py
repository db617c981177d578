"""The fan-out hub: every encoded frame goes to every viewer, each with its own bounded send buffer.

A viewer whose channel backs up skips frames until it has drained, then asks for one keyframe and resumes from
it, and is told how many frames it missed; nobody else waits for it (docs/protocol.md §6). "Backed up" means
more than ``MAX_LAG_S`` of the stream waiting to be sent, judged by the stream's recent bitrate, and never less
than ``MIN_BUFFERED`` (a keyframe must fit) nor more than ``MAX_BUFFERED`` (the memory bound per viewer). So a
slow viewer sees a picture at most about half a second old, not a backlog. Each frame is cut into fragments
once, for all viewers.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from impromptu.stream.framing import EncodedChunk, fragment

logger = logging.getLogger(__name__)

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


class _ViewerState:
    __slots__ = ("behind", "sink", "skipped", "skipped_total", "waiting_for_keyframe")

    def __init__(self, sink: VideoSink) -> None:
        self.sink = sink
        self.waiting_for_keyframe = True
        self.behind = False
        self.skipped = 0
        """Frames skipped since the viewer fell behind (not those before its first keyframe)."""
        self.skipped_total = 0


class Hub:
    """``request_keyframe()`` asks the encoder for a keyframe; ``on_skipped(viewer_id, frames)`` is called when a
    viewer that fell behind resumes, with the number of frames it did not get."""

    def __init__(
        self,
        request_keyframe: Callable[[], None],
        on_skipped: Callable[[str, int], None] = lambda viewer_id, frames: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._request_keyframe = request_keyframe
        self._on_skipped = on_skipped
        self._clock = clock
        self._viewers: dict[str, _ViewerState] = {}
        self._recent: deque[tuple[float, int]] = deque()
        self._recent_bytes = 0

    def limit(self) -> int:
        """The bytes a viewer may have waiting before it counts as behind."""
        rate = self._recent_bytes / RATE_WINDOW_S
        return int(min(MAX_BUFFERED, max(MIN_BUFFERED, rate * MAX_LAG_S)))

    def _measure(self, size: int) -> None:
        now = self._clock()
        self._recent.append((now, size))
        self._recent_bytes += size
        while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent_bytes -= self._recent.popleft()[1]

    def __len__(self) -> int:
        return len(self._viewers)

    def __contains__(self, viewer_id: object) -> bool:
        return viewer_id in self._viewers

    def add(self, sink: VideoSink) -> None:
        self._viewers[sink.id] = _ViewerState(sink)
        self._request_keyframe()

    def remove(self, viewer_id: str) -> None:
        self._viewers.pop(viewer_id, None)

    def skipped(self, viewer_id: str) -> int:
        """Frames skipped in all for this viewer because it was behind."""
        state = self._viewers.get(viewer_id)
        return state.skipped_total if state is not None else 0

    def _drained(self, state: _ViewerState) -> Callable[[], None]:
        def drained() -> None:
            if state.behind and self._viewers.get(state.sink.id) is state:
                self._request_keyframe()  # the next publish finds it drained and resumes it on that keyframe

        return drained

    def publish(self, chunk: EncodedChunk) -> None:
        self._measure(len(chunk.data))
        limit = self.limit()
        fragments: list[bytes] | None = None
        for state in self._viewers.values():
            buffered = state.sink.buffered_amount
            if buffered > limit or (state.behind and buffered > limit // 4):
                if not state.behind:
                    logger.info("viewer %s is behind: skipping frames until it catches up", state.sink.id)
                    # Nothing may be published while the screen is still: the drain itself asks for the keyframe
                    # that gets the viewer going again.
                    state.sink.notify_drained(limit // 4, self._drained(state))
                state.behind = True
                state.waiting_for_keyframe = True
                state.skipped += 1
                continue
            if state.behind:
                # Caught up: one keyframe gets it going again (asked for once, not on every skipped frame).
                state.behind = False
                self._request_keyframe()
            if state.waiting_for_keyframe and not chunk.keyframe:
                if state.skipped:
                    state.skipped += 1  # after falling behind; before the first keyframe there is nothing to miss
                continue
            if fragments is None:
                fragments = fragment(chunk)
            for message in fragments:
                state.sink.send_video(message)
            state.waiting_for_keyframe = False
            if state.skipped:
                skipped, state.skipped = state.skipped, 0
                state.skipped_total += skipped
                self._on_skipped(state.sink.id, skipped)
