"""A relay's video forwarding (docs/protocol.md §7): every fragment from upstream goes to each viewer unchanged,
under the rules of the desktop's hub (§6).

The relay never reassembles or decodes. It reads each fragment's 24-byte header (§4) to learn which frame it
belongs to and whether that frame is a keyframe, and decides once per frame and viewer — at the frame's first
fragment — whether the viewer gets it: a viewer starts at a keyframe; a viewer whose channel backs up skips whole
frames until it has drained below a quarter of the limit, then resumes at a keyframe and is told how many frames it
missed. The fragments of the last two frames of each surface are kept, so a viewer that becomes ready while a
keyframe is arriving (one asked for by an earlier viewer, within the 250 ms that rate-limit requests) still gets it
whole.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from impromptu.stream.backlog import MAX_BUFFERED, Backlog, StreamRate, VideoSink
from impromptu.stream.framing import FLAG_KEYFRAME, HEADER, HEADER_SIZE, MAX_PAYLOAD, SEQ_MOD, VERSION, seq_newer

logger = logging.getLogger(__name__)

TRACKED_FRAMES = 8
"""Frames per surface whose per-viewer decisions are remembered, so their late fragments (the channel is unordered)
go where their first ones went; as many as a receiver reassembles at once (§4)."""
KEPT_FRAMES = 2
"""Frames per surface whose fragments are kept for viewers that become ready mid-frame."""
MAX_KEPT_BYTES = MAX_BUFFERED
"""A frame larger than this is forwarded but not kept: the memory a relay holds stays bounded."""
MAX_SURFACES = 16
KEYFRAME_INTERVAL_S = 0.25
"""Keyframe requests upstream: at most one per surface this often (§6, §7)."""


class _Frame:
    __slots__ = ("count", "flags", "indices", "kept", "messages", "received", "recipients", "seq", "size")

    def __init__(self, seq: int, flags: int, count: int, size: int) -> None:
        self.seq = seq
        self.flags = flags
        self.count = count
        self.size = size
        self.indices: set[int] = set()
        self.received = 0
        self.messages: list[bytes] | None = []
        """The fragments so far, while this frame is among the last ``KEPT_FRAMES``; ``None`` once not kept."""
        self.kept = 0
        """Bytes in ``messages``."""
        self.recipients: set[str] = set()
        """The viewers this frame goes to, decided at its first fragment (or when a viewer started on it)."""

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & FLAG_KEYFRAME)


class _Surface:
    __slots__ = ("frames", "newest")

    def __init__(self) -> None:
        self.frames: OrderedDict[int, _Frame] = OrderedDict()
        self.newest: int | None = None

    def age(self, seq: int) -> int:
        """How many frames ``seq`` is behind the newest one (0 for the newest)."""
        return 0 if self.newest is None else (self.newest - seq) % SEQ_MOD


class Forwarder:
    """Forwards upstream ``video`` messages to viewers.

    ``request_keyframe(surface)`` asks upstream for a keyframe (the caller rate-limits it, see
    ``KeyframeRequests``); ``on_skipped(viewer_id, surface, frames)`` is called when a viewer that fell behind
    resumes, with the number of frames of that surface it did not get; ``on_keyframe(surface)`` when a keyframe
    starts arriving from upstream.
    """

    def __init__(
        self,
        request_keyframe: Callable[[int], None],
        on_skipped: Callable[[str, int, int], None] = lambda viewer_id, surface, frames: None,
        on_keyframe: Callable[[int], None] = lambda surface: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._request_keyframe = request_keyframe
        self._on_skipped = on_skipped
        self._on_keyframe = on_keyframe
        self._viewers: dict[str, Backlog] = {}
        self._surfaces: dict[int, _Surface] = {}
        self._rate = StreamRate(clock)
        self.dropped = 0
        """Malformed, duplicate or stale fragments from upstream that were not forwarded."""

    def __len__(self) -> int:
        return len(self._viewers)

    def __contains__(self, viewer_id: object) -> bool:
        return viewer_id in self._viewers

    def limit(self) -> int:
        """The bytes a viewer may have waiting before it counts as behind (as the hub's)."""
        return self._rate.limit()

    def skipped(self, viewer_id: str) -> int:
        """Frames skipped in all for this viewer because it was behind."""
        viewer = self._viewers.get(viewer_id)
        return viewer.skipped_total if viewer is not None else 0

    def surfaces(self) -> list[int]:
        return list(self._surfaces)

    def add(self, sink: VideoSink) -> None:
        """A viewer is ready for video. Where one of the kept frames of a surface is a keyframe, it gets the newest
        such keyframe (what has arrived of it, and the rest as it comes) and the frame after it; on other surfaces
        it waits for the next keyframe, which the caller asks for."""
        viewer = Backlog(sink, self._caught_up, logger)
        self._viewers[sink.id] = viewer
        for surface_id, surface in self._surfaces.items():
            kept = sorted(
                (f for f in surface.frames.values() if f.messages is not None), key=lambda f: -surface.age(f.seq)
            )
            starts = [i for i, f in enumerate(kept) if f.keyframe]
            if not starts:
                continue
            viewer.started.add(surface_id)
            for frame in kept[starts[-1] :]:
                frame.recipients.add(sink.id)
                assert frame.messages is not None
                for message in frame.messages:
                    sink.send_video(message)

    def remove(self, viewer_id: str) -> None:
        self._viewers.pop(viewer_id, None)
        for surface in self._surfaces.values():
            for frame in surface.frames.values():
                frame.recipients.discard(viewer_id)

    def reset(self) -> None:
        """A new upstream: its frames have nothing to do with the old one's. Every viewer starts again at a
        keyframe; frames skipped meanwhile are not reported (the new upstream's ``config`` resets viewers)."""
        self._surfaces.clear()
        for viewer in self._viewers.values():
            viewer.started.clear()
            viewer.skipped.clear()

    def reset_surface(self, surface: int) -> None:
        """A new ``config`` for ``surface`` on the same upstream (its desktop restarted, say): its frame numbers may
        start again anywhere, so nothing kept of it counts, and every viewer starts again at its next keyframe."""
        self._surfaces.pop(surface, None)
        for viewer in self._viewers.values():
            viewer.started.discard(surface)
            viewer.skipped.pop(surface, None)

    def push(self, message: bytes) -> None:
        """One ``video`` message from upstream."""
        if len(message) < HEADER_SIZE:
            return self._drop("short fragment")
        version, flags, surface_id, seq, index, count, size, _ = HEADER.unpack_from(message)
        payload = len(message) - HEADER_SIZE
        if version != VERSION:
            return self._drop(f"unknown version {version}")
        if count == 0 or index >= count:
            return self._drop(f"fragment index {index} of {count}")
        if payload > size or payload > MAX_PAYLOAD:
            return self._drop("fragment larger than its frame")
        surface = self._surfaces.get(surface_id)
        if surface is None:
            if len(self._surfaces) >= MAX_SURFACES:
                return self._drop(f"more than {MAX_SURFACES} surfaces")
            surface = self._surfaces[surface_id] = _Surface()
        frame = surface.frames.get(seq)
        if frame is None:
            if surface.newest is not None and not seq_newer(seq, surface.newest) and surface.age(seq) >= KEPT_FRAMES:
                # Its frame started long ago, or was forgotten: no receiver could complete it any more.
                return self._drop("fragment of an old frame")
            frame = self._new_frame(surface_id, surface, seq, flags, count, size)
        elif (frame.count, frame.size, frame.flags) != (count, size, flags):
            return self._drop("fragment disagrees with its frame's header")
        if index in frame.indices:
            return self._drop("duplicate fragment")
        if frame.received + payload > size:
            return self._drop("fragments exceed the frame size")
        frame.indices.add(index)
        frame.received += payload
        self._rate.measure(len(message))
        if frame.messages is not None:
            if frame.kept + len(message) <= MAX_KEPT_BYTES:
                frame.messages.append(message)
                frame.kept += len(message)
            else:
                frame.messages = None
        for viewer_id in frame.recipients:
            self._viewers[viewer_id].sink.send_video(message)
        return None

    def _new_frame(self, surface_id: int, surface: _Surface, seq: int, flags: int, count: int, size: int) -> _Frame:
        frame = _Frame(seq, flags, count, size)
        if frame.keyframe:
            self._on_keyframe(surface_id)
        if surface.newest is None or seq_newer(seq, surface.newest):
            surface.newest = seq
        surface.frames[seq] = frame
        while len(surface.frames) > TRACKED_FRAMES:
            surface.frames.popitem(last=False)
        for old in surface.frames.values():
            if old.messages is not None and surface.age(old.seq) >= KEPT_FRAMES:
                old.messages = None
        limit = self.limit()
        for viewer in self._viewers.values():
            if viewer.admit(surface_id, frame.keyframe, limit):
                skipped = viewer.take_skipped(surface_id)
                if skipped:
                    self._on_skipped(viewer.sink.id, surface_id, skipped)
                frame.recipients.add(viewer.sink.id)
        return frame

    def _caught_up(self, viewer: Backlog) -> None:
        if self._viewers.get(viewer.sink.id) is viewer:
            for surface in self._surfaces:  # one keyframe per surface gets it going again
                self._request_keyframe(surface)

    def _drop(self, why: str) -> None:
        self.dropped += 1
        logger.debug("dropped a video fragment from upstream: %s", why)


class Timer(Protocol):
    def cancel(self) -> None: ...


class KeyframeRequests:
    """Asks upstream for keyframes, at most once per ``KEYFRAME_INTERVAL_S`` per surface.

    A request within that time is not lost: it is sent when the time is up (once, however many came), unless a
    keyframe of that surface started arriving meanwhile, which serves it. ``call_later(delay, fn)`` is the event
    loop's.
    """

    def __init__(
        self,
        send: Callable[[int], None],
        call_later: Callable[[float, Callable[[], None]], Timer],
        clock: Callable[[], float] = time.monotonic,
        interval: float = KEYFRAME_INTERVAL_S,
    ) -> None:
        self._send = send
        self._call_later = call_later
        self._clock = clock
        self._interval = interval
        self._last: dict[int, float] = {}
        self._deferred: dict[int, Timer] = {}
        self.sent = 0

    def request(self, surface: int) -> None:
        if surface in self._deferred:
            return
        now = self._clock()
        last = self._last.get(surface)
        if last is None or now - last >= self._interval:
            self._fire(surface)
        else:
            self._deferred[surface] = self._call_later(last + self._interval - now, lambda: self._due(surface))

    def keyframe_seen(self, surface: int) -> None:
        timer = self._deferred.pop(surface, None)
        if timer is not None:
            timer.cancel()

    def reset(self) -> None:
        """A new upstream: nothing was asked of it yet."""
        self.cancel()
        self._last.clear()

    def cancel(self) -> None:
        for timer in self._deferred.values():
            timer.cancel()
        self._deferred.clear()

    def _due(self, surface: int) -> None:
        if self._deferred.pop(surface, None) is not None:
            self._fire(surface)

    def _fire(self, surface: int) -> None:
        self._last[surface] = self._clock()
        self.sent += 1
        self._send(surface)
