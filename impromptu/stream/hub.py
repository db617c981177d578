"""The fan-out hub: every encoded frame goes to every viewer, each with its own bounded send buffer.

A viewer whose channel backs up past ``MAX_BUFFERED`` skips frames until it has drained, then asks for one
keyframe and resumes from it; nobody else waits for it, and the bytes queued for it are bounded.
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
    __slots__ = ("behind", "dropped", "sink", "waiting_for_keyframe")

    def __init__(self, sink: VideoSink) -> None:
        self.sink = sink
        self.waiting_for_keyframe = True
        self.behind = False
        self.dropped = 0


class Hub:
    def __init__(self, request_keyframe: Callable[[], None]) -> None:
        self._request_keyframe = request_keyframe
        self._viewers: dict[str, _ViewerState] = {}

    def __len__(self) -> int:
        return len(self._viewers)

    def add(self, sink: VideoSink) -> None:
        self._viewers[sink.id] = _ViewerState(sink)
        self._request_keyframe()

    def remove(self, viewer_id: str) -> None:
        self._viewers.pop(viewer_id, None)

    def publish(self, chunk: EncodedChunk) -> None:
        fragments: list[bytes] | None = None
        for state in self._viewers.values():
            buffered = state.sink.buffered_amount
            if buffered > MAX_BUFFERED or (state.behind and buffered > RESUME_BUFFERED):
                if not state.behind:
                    logger.info("viewer %s is behind: skipping frames until it catches up", state.sink.id)
                state.behind = True
                state.waiting_for_keyframe = True
                state.dropped += 1
                continue
            if state.behind:
                # Caught up: one keyframe gets it going again (asked for once, not on every skipped frame).
                state.behind = False
                self._request_keyframe()
            if state.waiting_for_keyframe and not chunk.keyframe:
                state.dropped += 1
                continue
            if fragments is None:
                fragments = fragment(chunk)
            for message in fragments:
                state.sink.send_video(message)
            state.waiting_for_keyframe = False
