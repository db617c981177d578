"""The fan-out hub: every encoded frame goes to every viewer, each with its own bounded send buffer.

A viewer whose channel backs up past ``MAX_BUFFERED`` skips frames until it has drained, then asks for one
keyframe and resumes from it, and is told how many frames it missed; nobody else waits for it, and the bytes
queued for it are bounded (docs/protocol.md §6). Each frame is cut into fragments once, for all viewers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from impromptu.stream.framing import EncodedChunk, fragment

logger = logging.getLogger(__name__)

MAX_BUFFERED = 4 * 1024 * 1024
RESUME_BUFFERED = MAX_BUFFERED // 4


class VideoSink(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def buffered_amount(self) -> int: ...

    def send_video(self, message: bytes) -> None: ...


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
    ) -> None:
        self._request_keyframe = request_keyframe
        self._on_skipped = on_skipped
        self._viewers: dict[str, _ViewerState] = {}

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

    def publish(self, chunk: EncodedChunk) -> None:
        fragments: list[bytes] | None = None
        for state in self._viewers.values():
            buffered = state.sink.buffered_amount
            if buffered > MAX_BUFFERED or (state.behind and buffered > RESUME_BUFFERED):
                if not state.behind:
                    logger.info("viewer %s is behind: skipping frames until it catches up", state.sink.id)
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
