"""The capture→encode worker thread of one surface.

It sleeps until the surface changes (DAMAGE), a keyframe is asked for, or it is stopped; grabs as soon as
something changed — so a lone keystroke is on the wire at once — but never more often than the frame rate; and
hands each encoded frame to the asyncio loop with ``call_soon_threadsafe``. While nobody watches it is paused and
costs nothing.

A window's surface can pause (unmapped, minimised) and end (destroyed): the worker then stops grabbing, and tells
the loop (``on_state``: ``"paused"``, ``"live"`` again with a keyframe, or ``"ended"``, after which the thread
ends). With ``watch_idle`` it keeps an eye on that while nobody watches too — one grab, not encoded, at most every
``IDLE_PROBE_S`` and only when the window changed — so the session learns that the window is gone.

Its figures (docs/protocol.md §10) go to ``meter``: grab and encode time per frame, and the time spent waiting for a
change. Test hook: ``IMPROMPTU_TEST_ENCODE_DELAY_MS`` in the environment makes every encode take that much longer
(a sleep counted as encoding), so that a test can run a "slow desktop machine"; nothing else reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from impromptu.capture.base import Frame, FrameSource, SurfaceGone, SurfacePaused, SurfaceRenamed, SurfaceResized
from impromptu.encode.encoder import Encoder
from impromptu.stats.collector import SurfaceMeter
from impromptu.stream.framing import SEQ_MOD, EncodedChunk

logger = logging.getLogger(__name__)

KEYFRAME_MIN_INTERVAL_S = 0.25
"""Forced keyframes are rate-limited: a burst of joins or requests costs one keyframe per this interval."""
MAX_IN_FLIGHT = 2
"""Encoded frames handed to the loop and not yet published. When the loop falls behind, the worker waits rather
than queueing frames that would only arrive late: DAMAGE keeps the screen marked as changed meanwhile."""
JOIN_TIMEOUT_S = 2.0
IDLE_PROBE_S = 1.0
"""While nobody watches a window, its state is looked at (one grab) at most this often, and only on a change."""
TEST_ENCODE_DELAY_ENV = "IMPROMPTU_TEST_ENCODE_DELAY_MS"
"""Test hook: milliseconds added to every encode (see the module's docstring)."""


def _test_encode_delay_s() -> float:
    try:
        return max(0.0, float(os.environ.get(TEST_ENCODE_DELAY_ENV, "0"))) / 1000
    except ValueError:
        return 0.0


@dataclass(frozen=True, slots=True)
class FrameTiming:
    grab_ms: float
    encode_ms: float
    size: int
    keyframe: bool


class EncodeWorker:
    """Owns ``source`` and ``encoder`` once started; both are closed when it stops."""

    def __init__(
        self,
        source: FrameSource,
        encoder: Encoder,
        surface: int,
        on_chunk: Callable[[EncodedChunk], None],
        on_error: Callable[[BaseException], None],
        loop: asyncio.AbstractEventLoop,
        on_resize: Callable[[Encoder], None] = lambda encoder: None,
        on_state: Callable[[str, str], None] = lambda state, reason: None,
        watch_idle: bool = False,
        on_rename: Callable[[str], None] = lambda title: None,
    ) -> None:
        self._source = source
        self._encoder = encoder
        self._surface = surface
        self._on_chunk = on_chunk
        self._on_error = on_error
        self._on_resize = on_resize
        self._on_state = on_state
        self._on_rename = on_rename
        self._watch_idle = watch_idle
        self._paused = False
        self._loop = loop
        self._interval = 1.0 / encoder.fps
        self._lock = threading.Lock()
        self._active = False
        self._stopping = False
        self._keyframe_wanted = True
        self._snapshot: Callable[[Frame], None] | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name=f"impromptu-encode-{surface}", daemon=True)
        self._started = False
        self._in_flight = 0
        self.timings: deque[FrameTiming] = deque(maxlen=300)
        self.frames = 0
        self.meter = SurfaceMeter(encoder.fps)
        """This surface's figures over the last second (written by the thread, read by the loop)."""
        self._encode_delay_s = _test_encode_delay_s()

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def set_active(self, active: bool) -> None:
        """Capture only while someone watches."""
        with self._lock:
            self._active = active
            if active:
                self._keyframe_wanted = True
        self._wake()

    def request_keyframe(self) -> None:
        with self._lock:
            self._keyframe_wanted = True
        self._wake()

    def snapshot(self, take: Callable[[Frame], None]) -> None:
        """Call ``take(frame)`` on the worker's thread with the surface as it is now: the next frame encoded while
        someone watches, else one grab of its own. Never while the surface is paused; a later call replaces an
        earlier one not yet served. ``frame`` is valid only during the call."""
        with self._lock:
            self._snapshot = take
        self._wake()

    def stop(self) -> None:
        """Stop the thread and wait for it (idempotent)."""
        with self._lock:
            self._stopping = True
        self._wake()
        if self._started:
            # Bounded: a grab stuck on a hung X server must not hold up shutdown (the thread is a daemon).
            self._thread.join(JOIN_TIMEOUT_S)
        if self._wake_r >= 0:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    def _run(self) -> None:
        os.set_blocking(self._wake_r, False)
        try:
            self._loop_frames()
        except SurfaceGone as exc:  # not a failure: this surface has ended, others go on
            logger.info("surface %d ended: %s", self._surface, exc)
            self._loop.call_soon_threadsafe(self._on_state, "ended", str(exc))
        except BaseException as exc:  # Reported to the session, which stops with a one-line message.
            logger.debug("capture/encode worker failed", exc_info=True)
            self._loop.call_soon_threadsafe(self._on_error, exc)
        finally:
            self._encoder.close()
            self._source.close()

    def _loop_frames(self) -> None:
        source_fd = self._source.fileno()
        seq = 0
        last_frame = 0.0
        last_forced = -KEYFRAME_MIN_INTERVAL_S
        last_probe = -IDLE_PROBE_S
        while True:
            with self._lock:
                stopping, active, want_key = self._stopping, self._active, self._keyframe_wanted
                backlog = self._in_flight >= MAX_IN_FLIGHT
                snapshot = self._snapshot
            if stopping:
                return
            now = time.monotonic()
            if not active and snapshot is not None and not self._paused:
                self._take_snapshot(self._grab())
                continue
            if not active:
                idle_fds = [self._wake_r]
                idle_timeout: float | None = None
                if self._watch_idle and source_fd is not None:
                    idle_fds.append(source_fd)
                    if self._source.changed():
                        idle_timeout = last_probe + IDLE_PROBE_S - now
                        if idle_timeout <= 0:
                            last_probe = now
                            self._grab()  # only to learn whether it paused, came back or ended
                            continue
                ready, _, _ = select.select(idle_fds, [], [], idle_timeout)
                if self._wake_r in ready:
                    self._drain_wake()
                continue
            # Never faster than the frame rate; forced keyframes no faster than their own limit.
            earliest = last_frame + self._interval
            key_due = want_key and now - last_forced >= KEYFRAME_MIN_INTERVAL_S
            # A snapshot asked for while someone watches is the next frame: one grab serves both.
            changed = self._source.changed() or (snapshot is not None and not self._paused)
            size = self._source.size
            # (A window too small to show has no picture to encode: it is paused, and keeps its encoder meanwhile.)
            if size != (self._encoder.width, self._encoder.height) and min(size) >= 2:
                self._new_encoder()
            # While paused only a change is worth a grab: a keyframe asked for then comes when it shows again.
            if backlog or now < earliest or not (changed or (key_due and not self._paused)):
                if backlog:
                    timeout: float | None = self._interval  # _publish wakes us as soon as one is out
                elif now < earliest:
                    timeout = earliest - now
                elif want_key and not self._paused:
                    timeout = last_forced + KEYFRAME_MIN_INTERVAL_S - now
                else:
                    timeout = None if source_fd is not None else self._interval
                fds = [self._wake_r] if source_fd is None else [self._wake_r, source_fd]
                idle = not (backlog or now < earliest or changed)  # waiting for the surface to change
                if idle:
                    self.meter.idle_from(now)
                ready, _, _ = select.select(fds, [], [], timeout)
                if idle:
                    self.meter.idle_until(time.monotonic())
                if self._wake_r in ready:
                    self._drain_wake()
                continue
            last_frame = now
            if key_due:
                with self._lock:
                    self._keyframe_wanted = False
                last_forced = now
            started = time.perf_counter()
            paused = self._paused
            frame = self._grab()
            if frame is None:
                continue  # resized (the next turn makes an encoder of the new size) or paused
            grabbed = time.perf_counter()
            if snapshot is not None:
                self._take_snapshot(frame)
                started += time.perf_counter() - grabbed  # (not the capture's time)
                grabbed = time.perf_counter()
            # Showing again after a pause: viewers start over from a keyframe.
            data, keyframe = self._encoder.encode(frame.data, frame.capture_us, key_due or paused)
            if self._encode_delay_s:
                time.sleep(self._encode_delay_s)  # the test hook: a slow desktop machine
            encoded = time.perf_counter()
            if not data:
                continue
            grab_ms, encode_ms = (grabbed - started) * 1000, (encoded - grabbed) * 1000
            self.timings.append(FrameTiming(grab_ms, encode_ms, len(data), keyframe))
            self.meter.frame(grab_ms, encode_ms)
            chunk = EncodedChunk(self._surface, seq, keyframe, frame.capture_us, data)
            seq = (seq + 1) % SEQ_MOD
            self.frames += 1
            with self._lock:
                self._in_flight += 1
            self._loop.call_soon_threadsafe(self._publish, chunk)

    def _take_snapshot(self, frame: Frame | None) -> None:
        if frame is None:
            return  # resized or paused: asked again on the next turn, unless paused
        with self._lock:
            take, self._snapshot = self._snapshot, None
        if take is not None:
            try:
                take(frame)
            except Exception:
                logger.exception("surface %d: a snapshot failed", self._surface)

    def _grab(self) -> Frame | None:
        """A frame, or ``None`` when there is none to encode now (resized, renamed, or paused: the loop hears of a
        new title, of a pause and of the end of it, in order with the frames). ``SurfaceGone`` goes up: the thread
        ends."""
        try:
            frame = self._source.grab()
        except SurfaceResized:
            return None
        except SurfaceRenamed as exc:
            self._loop.call_soon_threadsafe(self._on_rename, exc.title)
            return None
        except SurfacePaused as exc:
            if not self._paused:
                self._paused = True
                logger.info("surface %d paused: %s", self._surface, exc)
                self._loop.call_soon_threadsafe(self._on_state, "paused", str(exc))
            return None
        if self._paused:
            self._paused = False
            logger.info("surface %d is live again", self._surface)
            self._loop.call_soon_threadsafe(self._on_state, "live", "")
        return frame

    def _new_encoder(self) -> None:
        """The surface changed size: a new encoder for the new size, whose first frame is a keyframe. The loop
        hears of it (to tell viewers) before it gets any frame of the new size: callbacks run in order."""
        old = self._encoder
        width, height = self._source.size
        self._encoder = Encoder(width, height, old.fps, old.encoder)
        old.close()
        self._loop.call_soon_threadsafe(self._on_resize, self._encoder)

    def _publish(self, chunk: EncodedChunk) -> None:
        """On the loop: hand the chunk on, then let the worker make the next one."""
        try:
            self._on_chunk(chunk)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._wake()
