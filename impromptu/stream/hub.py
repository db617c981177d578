"""The fan-out hub: every encoded frame goes to every viewer, each with its own bounded send buffer.

A viewer whose channel backs up skips frames until it has drained, then asks for one keyframe and resumes from
it, and is told how many frames it missed; nobody else waits for it (docs/protocol.md §6). "Backed up" means
more than ``MAX_LAG_S`` of the stream waiting to be sent, judged by the stream's recent bitrate, and never less
than ``MIN_BUFFERED`` (a keyframe must fit) nor more than ``MAX_BUFFERED`` (the memory bound per viewer). So a
slow viewer sees a picture at most about half a second old, not a backlog. Each frame is cut into fragments
once, for all viewers. The rules themselves are ``Backlog``'s and ``StreamRate``'s (``backlog.py``), which relays
share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from impromptu.stream.backlog import (
    MAX_BUFFERED,
    MAX_LAG_S,
    MIN_BUFFERED,
    RATE_WINDOW_S,
    Backlog,
    StreamRate,
    VideoSink,
)
from impromptu.stream.framing import EncodedChunk, fragment

__all__ = ["MAX_BUFFERED", "MAX_LAG_S", "MIN_BUFFERED", "RATE_WINDOW_S", "Hub", "VideoSink"]

logger = logging.getLogger(__name__)

_STREAM = 0
"""The hub's frames are one stream to its viewers, whatever their surface: the key of their ``Backlog``."""


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
        self._viewers: dict[str, Backlog] = {}
        self._rate = StreamRate(clock)

    def limit(self) -> int:
        """The bytes a viewer may have waiting before it counts as behind."""
        return self._rate.limit()

    def __len__(self) -> int:
        return len(self._viewers)

    def __contains__(self, viewer_id: object) -> bool:
        return viewer_id in self._viewers

    def add(self, sink: VideoSink) -> None:
        self._viewers[sink.id] = Backlog(sink, self._caught_up, logger)
        self._request_keyframe()

    def remove(self, viewer_id: str) -> None:
        self._viewers.pop(viewer_id, None)

    def skipped(self, viewer_id: str) -> int:
        """Frames skipped in all for this viewer because it was behind."""
        viewer = self._viewers.get(viewer_id)
        return viewer.skipped_total if viewer is not None else 0

    def counts(self, viewer_id: str) -> tuple[int, int]:
        """Frames sent to this viewer, and frames skipped for it because it was behind, since it joined (figures for
        statistics, protocol.md §10)."""
        viewer = self._viewers.get(viewer_id)
        return (viewer.sent_total, viewer.dropped_total) if viewer is not None else (0, 0)

    def _caught_up(self, viewer: Backlog) -> None:
        if self._viewers.get(viewer.sink.id) is viewer:
            self._request_keyframe()

    def publish(self, chunk: EncodedChunk) -> None:
        self._rate.measure(len(chunk.data))
        limit = self.limit()
        fragments: list[bytes] | None = None
        for viewer in self._viewers.values():
            if not viewer.admit(_STREAM, chunk.keyframe, limit):
                continue
            if fragments is None:
                fragments = fragment(chunk)
            for message in fragments:
                viewer.sink.send_video(message)
            skipped = viewer.take_skipped(_STREAM)
            if skipped:
                self._on_skipped(viewer.sink.id, skipped)
