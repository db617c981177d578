"""Recordings: the encoded stream muxed into files as it is — the very packets viewers get, never a second encode.

A ``Recording`` is fed each surface's ``EncodedChunk``s on the asyncio loop and hands them, through a bounded queue,
to a writer thread of its own, which muxes them with PyAV: H.264 into fragmented MP4 (``.mp4``), VP8 into WebM
(``.webm``). Nothing on the loop or the encode thread waits for the disk: when the queue is full (a stalled disk)
chunks are dropped, with one log line, up to the next keyframe, which is then asked for.

**Timestamps** follow the capture clock: a packet's time is its ``capture_us`` less the first frame's, so a file
plays at true speed, and an idle screen (the worker encodes only on change) costs nothing but the periodic
keyframes. Closing asks for one last frame (a keyframe), so the file lasts until the moment it was closed; a
surface that has sent no keyframe yet (a recording stopped at once) is waited for as long.

**Failures** are the recording's own: a writer that fails (a full disk) stops writing there, with one log line,
while sharing goes on; ``close()`` then raises ``RecordError``, as it does when nothing at all was recorded.

**Surviving SIGKILL.** MP4 is written fragmented (``frag_keyframe+empty_moov+default_base_moof``) with a fragment
cut at least every ``FRAGMENT_S`` of stream and flushed to the file as it is cut; WebM is written with a cluster
at least every ``FRAGMENT_S``, flushed likewise. A muxer only cuts a fragment when a packet arrives, so while
recording the workers are asked for a keyframe when none came for ``KEYFRAME_INTERVAL_S``: an idle screen is
then on disk within about that long. A killed recording is a valid file holding all but its last few seconds.

**Several surfaces** are recorded side by side, each in a file of its own: ``FILE`` for the first, ``STEM-2.SUF``,
``STEM-3.SUF`` … for the others (by position, not surface number). **A resize** (a new encoder, new parameter
sets) starts a new file, since one MP4 track cannot change size: ``STEM.1.SUF``, ``STEM.2.SUF`` … (``STEM-2.1.SUF``
for the second surface).

**Keeping only the last N seconds** (``segment_s``): each file is then a ring of segments, fragmented files of
their own that each start at a keyframe, of about N/2 seconds each, in a hidden folder beside it
(``.NAME.segments``). Whenever a segment is complete, those still needed to cover N seconds are remuxed (packets
copied, nothing decoded) into ``FILE`` (a temporary file renamed over it, so it is always whole), and older ones are
deleted. At a normal close the last one is added, ``FILE`` is rebuilt once more and the folder removed. After a
SIGKILL: ``FILE`` holds at least N seconds up to the last completed segment (or all of them, if fewer), and the
folder is left with the segments themselves, the last one holding the newest (up to N/2) seconds as far as its
last flushed fragment, each a playable file; before the first segment is complete there is no ``FILE`` yet, only
the folder.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from impromptu.errors import RecordError
from impromptu.stream.framing import EncodedChunk

logger = logging.getLogger(__name__)

__all__ = [
    "FRAGMENT_S",
    "KEYFRAME_INTERVAL_S",
    "Recording",
    "check_path",
    "remux",
    "surface_path",
]

KEYFRAME_INTERVAL_S = 3.0
"""While recording, a surface that sent no keyframe for this long is asked for one: it cuts a fragment (so an idle
screen reaches the file) and a place where a segment can start. The same keyframe goes to viewers: kept rare."""
FRAGMENT_S = 1.0
"""A fragment (MP4) or cluster (WebM) is cut at least this often while frames come, and flushed to the file."""
QUEUE_MAX_BYTES = 64 << 20
"""Encoded bytes waiting for the writer thread beyond which chunks are dropped (a stalled disk)."""
CLOSE_FRAME_TIMEOUT_S = 1.0
"""How long closing waits for the last frame it asked for (none comes from a paused window)."""
MIN_SEGMENT_S = 1.0
_TIME_BASE = Fraction(1, 1_000_000)
_CONTAINERS = {".mp4": ("mp4", "h264"), ".webm": ("webm", "vp8")}


def container_for(codec: str) -> str:
    """The file suffix for a WebCodecs codec string (``avc1.…`` → ``.mp4``, ``vp8`` → ``.webm``)."""
    if codec.startswith("avc1"):
        return ".mp4"
    if codec == "vp8":
        return ".webm"
    raise RecordError(f"cannot record the {codec} codec")


def check_path(path: Path, codec: str | None = None) -> None:
    """Raise ``RecordError`` if ``path`` cannot take a recording (of ``codec``, a WebCodecs codec string, if
    given): an unknown suffix, a suffix for another codec, or a folder that is not there."""
    suffix = path.suffix.lower()
    if suffix not in _CONTAINERS:
        raise RecordError(f"cannot record to {path}: name it .mp4 (H.264) or .webm (VP8)")
    if codec is not None and container_for(codec) != suffix:
        wanted = container_for(codec)
        raise RecordError(
            f"cannot record to {path}: the stream is {codec}, which goes in a {wanted} file, not {suffix}"
        )
    if not path.parent.is_dir():
        raise RecordError(f"cannot record to {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise RecordError(f"cannot record to {path}: it is a folder")


def surface_path(path: Path, index: int, part: int = 0) -> Path:
    """The file of the ``index``-th recorded surface (from 0) and its ``part``-th size (from 0)."""
    stem = path.stem if index == 0 else f"{path.stem}-{index + 1}"
    if part:
        stem = f"{stem}.{part}"
    return path.with_name(stem + path.suffix)


def parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units of an Annex B keyframe (with their start codes): the MP4 muxer's extradata."""
    out = []
    for nal in re.split(b"\x00\x00\x01", data):
        nal = nal.rstrip(b"\x00")
        if nal and nal[0] & 0x1F in (7, 8):
            out.append(b"\x00\x00\x00\x01" + nal)
    return b"".join(out)


def _open_container(path: Path) -> Any:
    """A PyAV output container for ``path`` set up so that every fragment reaches the file as it is cut."""
    kind, _ = _CONTAINERS[path.suffix.lower()]
    fragment_us = str(int(FRAGMENT_S * 1_000_000))
    if kind == "mp4":
        options = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": fragment_us}
    else:
        options = {"cluster_time_limit": str(int(FRAGMENT_S * 1000))}
    return av.open(str(path), "w", format=kind, options={**options, "flush_packets": "1"})


def _open_output(path: Path, width: int, height: int, extradata: bytes | None) -> tuple[Any, Any]:
    container = _open_container(path)
    try:
        stream = container.add_stream(_CONTAINERS[path.suffix.lower()][1])
        stream.width, stream.height = width, height
        stream.time_base = _TIME_BASE
        if extradata:
            stream.codec_context.extradata = extradata
        container.start_encoding()
    except BaseException:
        container.close()
        raise
    return container, stream


class _File:
    """One playable file being written, from a keyframe on; its times start at 0 at that keyframe (``origin_us``)."""

    def __init__(self, path: Path, codec: str, width: int, height: int, first: EncodedChunk, fps: int) -> None:
        extradata = parameter_sets(first.data) if codec.startswith("avc1") else None
        self.path = path
        self.origin_us = first.capture_us
        self.last_us = first.capture_us
        self._frame_us = 1_000_000 // max(fps, 1)
        self._last_pts: int | None = None
        self._container, self._stream = _open_output(path, width, height, extradata)

    def write(self, chunk: EncodedChunk) -> None:
        packet = av.Packet(chunk.data)
        pts = chunk.capture_us - self.origin_us
        if self._last_pts is not None:
            pts = max(pts, self._last_pts + 1)  # a muxer wants them rising
        self._last_pts = packet.pts = packet.dts = pts
        # Only the last packet's duration counts (the others end where the next starts): one frame.
        packet.duration = self._frame_us
        packet.time_base = _TIME_BASE
        packet.is_keyframe = chunk.keyframe
        packet.stream = self._stream
        self._container.mux(packet)
        self.last_us = max(self.last_us, chunk.capture_us)

    def close(self) -> None:
        self._container.close()


def remux(sources: list[tuple[Path, int, int]], dest: Path) -> None:
    """Copy the packets of ``sources`` — each a file, and its start and end on a common clock (µs) — into one
    file ``dest``, which lasts until the last one's end; through a temporary file renamed over it, so ``dest`` is
    always whole. Nothing is decoded or encoded."""
    if not sources:
        return
    temporary = dest.with_name(f".{dest.stem}.tmp{dest.suffix}")
    first_start = sources[0][1]
    container = _open_container(temporary)
    pending: Any = None
    """The last packet copied, held back until its duration is known."""
    try:
        stream = None
        for source, start, _ in sources:
            with av.open(str(source)) as src:
                src_stream = src.streams.video[0]
                if stream is None:
                    # (The segments' own parameters: made by hand from Annex B extradata, the track holds none.)
                    stream = container.add_stream_from_template(src_stream)
                    stream.time_base = _TIME_BASE
                for packet in src.demux(src_stream):
                    if packet.pts is None or packet.size == 0:
                        continue
                    assert packet.time_base is not None
                    pts = int(packet.pts * packet.time_base / _TIME_BASE) + start - first_start
                    if pending is not None:
                        pts = max(pts, pending.pts + 1)
                        pending.duration = pts - pending.pts
                        container.mux(pending)
                    packet.time_base = _TIME_BASE
                    packet.pts = packet.dts = pts
                    packet.stream = stream
                    pending = packet
        if pending is not None:
            pending.duration = max(1, sources[-1][2] - first_start - pending.pts)
            container.mux(pending)
    finally:
        container.close()
    os.replace(temporary, dest)


class _Ring:
    """``path`` kept to about the last ``keep_s`` seconds: segments in a hidden folder, remuxed into ``path``."""

    def __init__(self, path: Path, codec: str, width: int, height: int, fps: int, keep_s: float) -> None:
        self.path = path
        self._codec, self._width, self._height, self._fps = codec, width, height, fps
        self._keep_us = int(keep_s * 1_000_000)
        self.segment_us = int(max(MIN_SEGMENT_S, keep_s / 2) * 1_000_000)
        self.folder = _free_folder(path)
        self.folder.mkdir(mode=0o700)
        # Overwritten like any recording's file, and now: a kill before the first segment is complete must not
        # leave an older recording under this name to be taken for this one.
        path.unlink(missing_ok=True)
        self._done: list[tuple[Path, int, int]] = []
        """Completed segments still needed: file, first and last capture time (µs)."""
        self._current: _File | None = None
        self._count = 0
        self.origin_us: int | None = None
        self.last_us: int | None = None

    def write(self, chunk: EncodedChunk) -> None:
        current = self._current
        if current is not None and chunk.keyframe and chunk.capture_us - current.origin_us >= self.segment_us:
            self._finish_segment(chunk.capture_us)
            current = None
        if current is None:
            self._count += 1
            name = f"{self._count:06d}-{chunk.capture_us}{self.path.suffix}"
            current = self._current = _File(
                self.folder / name, self._codec, self._width, self._height, chunk, self._fps
            )
            if self.origin_us is None:
                self.origin_us = chunk.capture_us
        current.write(chunk)
        self.last_us = chunk.capture_us

    def _finish_segment(self, end_us: int) -> None:
        current = self._current
        assert current is not None
        current.close()
        self._current = None
        self._done.append((current.path, current.origin_us, end_us))
        self._prune(end_us)
        remux(self._done, self.path)

    def _prune(self, end_us: int) -> None:
        while len(self._done) > 1 and end_us - self._done[1][1] >= self._keep_us:
            with contextlib.suppress(OSError):
                self._done[0][0].unlink()
            del self._done[0]

    def close(self) -> None:
        if self._current is not None:
            current = self._current
            current.close()
            self._current = None
            end_us = current.last_us + 1_000_000 // max(self._fps, 1)  # the last frame lasts one frame
            self._done.append((current.path, current.origin_us, end_us))
            self._prune(end_us)
        remux(self._done, self.path)
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._done:
            self.origin_us = self._done[0][1]


def _free_folder(path: Path) -> Path:
    """``.NAME.segments`` beside ``path``, or ``.NAME.segments-2`` … if an earlier run left one (after a kill)."""
    for n in range(1, 1000):
        folder = path.with_name(f".{path.name}.segments" + (f"-{n}" if n > 1 else ""))
        if not folder.exists():
            return folder
    raise RecordError(f"too many segment folders left beside {path}: remove the .{path.name}.segments* folders")


@dataclass
class _Track:
    """One surface's recording, on the writer thread."""

    index: int
    codec: str
    width: int
    height: int
    part: int = 0
    target: _File | _Ring | None = None
    paths: list[Path] = field(default_factory=list)


@dataclass
class _Feed:
    """One surface's recording, on the loop: what has been fed, for keyframe requests and dropping."""

    gone: bool = False
    """The surface ended, or closing expects no last frame from it."""
    last_key_us: int = 0
    last_us: int = 0
    resync: bool = True
    """Drop this surface's chunks until a keyframe (at start, and after chunks were dropped)."""
    closing_us: int = 0
    """While closing: the capture time of the frame closing waits for from this surface."""


class Recording:
    """A recording of a session's surfaces (see the module's docstring). Made by ``ShareSession.start_recording``;
    fed on the loop; ``await close()`` ends it (idempotent)."""

    def __init__(
        self,
        path: Path,
        surfaces: dict[int, tuple[str, int, int]],
        request_keyframe: Callable[[int], bool],
        segment_s: float | None = None,
        fps: int = 30,
        on_closed: Callable[[Recording], None] = lambda recording: None,
    ) -> None:
        """``surfaces``: each surface's number and its codec string, width and height now. ``request_keyframe(n)``
        asks surface ``n`` for a keyframe and says whether one can come (``False``: it is paused or ended)."""
        for codec, _, _ in surfaces.values():
            check_path(path, codec)
        if segment_s is not None and not segment_s > 0:
            raise RecordError(f"cannot keep the last {segment_s} seconds of a recording: give a positive number")
        self.segment_s = segment_s
        self._path = path
        self._request_keyframe = request_keyframe
        self._on_closed = on_closed
        self._fps = fps
        self._feeds = {number: _Feed() for number in surfaces}
        self._tracks = {
            number: _Track(index, codec, width, height)
            for index, (number, (codec, width, height)) in enumerate(surfaces.items())
        }
        self._queue: collections.deque[tuple[str, Any]] = collections.deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="impromptu-record", daemon=True)
        self._closing_us: int | None = None
        self._closing: asyncio.Future[None] | None = None
        self._last_frame: asyncio.Event | None = None
        self._state = "new"
        self._ticker: asyncio.Task[None] | None = None
        self.keyframe_interval_s = KEYFRAME_INTERVAL_S
        if segment_s is not None:
            self.keyframe_interval_s = min(KEYFRAME_INTERVAL_S, max(MIN_SEGMENT_S, segment_s / 2))
        self.started = threading.Event()
        """Set by the writer thread once the first frame (a keyframe, of whichever surface has one first) is in a
        file: the recording has begun. ``started_us`` is set before it. Wait on it rather than poll
        ``started_us``; it is never set if nothing is recorded (``close()`` then raises ``RecordError``)."""
        self.started_us: int | None = None
        """Capture time (µs since the epoch) of the first frame written, of any surface; ``None`` until
        ``started`` is set. Set once by the writer thread — except with ``segment_s``, where closing sets it once
        more, to the first frame kept in the files (older ones were dropped). Final when ``close()`` returns."""
        self.ended_us: int | None = None
        """Capture time of the newest frame written so far, of any surface (the greatest), or ``None`` if none
        was; it only grows, as the writer thread writes. Final when ``close()`` returns."""
        self._kept_from: list[int] = []
        self.dropped = 0
        """Chunks dropped because the writer fell behind (the disk stalled)."""
        self.error: BaseException | None = None
        """What stopped the writer, if anything did (logged too); the recording then ends there, and ``close()``
        raises ``RecordError`` from it. Sharing goes on meanwhile: only the files stop."""
        self._started_at = 0.0
        """When ``start()`` ran (``time.monotonic()``)."""
        self._waited_s = 0.0
        """From ``start()`` to the end of closing: how long a keyframe was waited for, if none came."""

    @property
    def path(self) -> Path:
        """The file of the first surface."""
        return self._path

    @property
    def paths(self) -> list[Path]:
        """Every file written so far (or being written), surface by surface, part by part."""
        with self._cond:
            return [p for track in self._tracks.values() for p in track.paths]

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    def start(self, request_keyframes: bool = True) -> None:
        """Start the writer thread and ask every surface for a keyframe (a recording starts with one) — unless
        ``request_keyframes`` is false: the caller has just asked for them already."""
        if self._state != "new":
            raise RecordError("a recording can only be started once")
        self._state = "recording"
        self._started_at = time.monotonic()
        self._thread.start()
        if request_keyframes:
            for number in self._feeds:
                self._request_keyframe(number)
        self._ticker = asyncio.ensure_future(self._keyframes())

    def feed(self, chunk: EncodedChunk) -> None:
        """On the loop: one encoded frame of one surface. Never blocks."""
        if self._state != "recording":
            return
        feed = self._feeds.get(chunk.surface)
        if feed is None:
            return
        if feed.resync and not chunk.keyframe:
            return
        with self._cond:
            if self._queued_bytes + len(chunk.data) > QUEUE_MAX_BYTES:
                full = True
            else:
                full = False
                self._queue.append(("chunk", chunk))
                self._queued_bytes += len(chunk.data)
                self._cond.notify()
        if full:
            self.dropped += 1
            if not feed.resync:
                logger.warning(
                    "recording %s: the disk is not keeping up; dropping surface %d's frames up to a keyframe",
                    self._path,
                    chunk.surface,
                )
                feed.resync = True
                self._request_keyframe(chunk.surface)
            return
        feed.resync = False
        feed.last_us = chunk.capture_us
        if chunk.keyframe:
            feed.last_key_us = chunk.capture_us
        if self._last_frame is not None and self._closing_done():
            self._last_frame.set()

    def _closing_done(self) -> bool:
        """Whether every surface that can has sent the last frame closing waits for."""
        return self._closing_us is not None and all(
            f.last_us >= f.closing_us for f in self._feeds.values() if not f.gone
        )

    def resized(self, number: int, codec: str, width: int, height: int) -> None:
        """On the loop, before the first chunk of the new size: surface ``number`` goes on in a new file."""
        feed = self._feeds.get(number)
        if self._state != "recording" or feed is None:
            return
        feed.resync = True  # the new encoder's first frame is a keyframe
        with self._cond:
            self._queue.append(("resize", (number, codec, width, height)))
            self._cond.notify()

    def ended(self, number: int) -> None:
        """Surface ``number`` ended: no last frame is waited for from it."""
        feed = self._feeds.get(number)
        if feed is not None:
            feed.gone = True

    async def close(self) -> None:
        """Ask for one last frame (so the files last until now), then finish the files and end the thread.
        Idempotent; a second call waits for the first, and raises as it does.

        Raises ``RecordError`` — once the files are finished and the thread has ended — if the writer failed
        (``from`` its error, ``self.error``) or if nothing was recorded (no keyframe came, not even the one
        closing waits up to ``CLOSE_FRAME_TIMEOUT_S`` for): ``recording FILE failed: …``."""
        if self._state == "new":
            self._state = "closed"
            self._on_closed(self)
            return
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)
        if self.error is not None:
            raise RecordError(f"recording {self._path} failed: {self.error}") from self.error
        if not self.started.is_set():
            raise RecordError(
                f"recording {self._path} failed: nothing was recorded: no keyframe came within "
                f"{self._waited_s:.1f} s (the windows were paused or gone, or the recording was stopped at once)"
            )

    async def _close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._closing_us = time.time_ns() // 1000
        self._last_frame = asyncio.Event()
        waiting = False
        for number, feed in self._feeds.items():
            if not feed.gone and self._request_keyframe(number):
                waiting = True
                # A frame captured from now on; or, from a surface still waiting for a keyframe (a recording
                # stopped at once, while the workers' keyframe rate limit holds it back), that keyframe.
                feed.closing_us = feed.last_us + 1 if feed.resync else self._closing_us
            else:
                feed.gone = True  # nothing to wait for
        if waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._last_frame.wait(), CLOSE_FRAME_TIMEOUT_S)
        self._state = "closing"
        with self._cond:
            self._queue.append(("stop", None))
            self._cond.notify()
        await asyncio.to_thread(self._thread.join)
        self._waited_s = time.monotonic() - self._started_at
        self._state = "closed"
        self._on_closed(self)

    async def _keyframes(self) -> None:
        """Every surface that sent no keyframe for ``keyframe_interval_s`` is asked for one."""
        interval_us = int(self.keyframe_interval_s * 1_000_000)
        while True:
            await asyncio.sleep(self.keyframe_interval_s / 4)
            now_us = time.time_ns() // 1000
            for number, feed in self._feeds.items():
                if not feed.gone and now_us - feed.last_key_us >= interval_us:
                    feed.last_key_us = now_us  # asked: not again before another interval
                    self._request_keyframe(number)

    # The writer thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue:
                        self._cond.wait()
                    kind, item = self._queue.popleft()
                    if kind == "chunk":
                        self._queued_bytes -= len(item.data)
                if kind == "stop":
                    break
                if self.error is not None:
                    continue
                try:
                    if kind == "chunk":
                        self._write(item)
                    else:
                        self._resize(*item)
                except Exception as exc:
                    self.error = exc
                    logger.error("recording %s failed, and stops here (sharing goes on): %s", self._path, exc)
                    logger.debug("recording failed", exc_info=True)
        finally:
            for track in self._tracks.values():
                self._finish(track)
            if self._kept_from:  # only the last seconds were kept: the first frame is the first one kept
                self.started_us = min(self._kept_from)

    def _write(self, chunk: EncodedChunk) -> None:
        track = self._tracks[chunk.surface]
        if track.target is None:
            if not chunk.keyframe:
                return
            path = surface_path(self._path, track.index, track.part)
            if self.segment_s is None:
                track.target = _File(path, track.codec, track.width, track.height, chunk, self._fps)
            else:
                track.target = _Ring(path, track.codec, track.width, track.height, self._fps, self.segment_s)
            with self._cond:
                track.paths.append(path)
        track.target.write(chunk)
        self.ended_us = max(self.ended_us or 0, chunk.capture_us)
        if self.started_us is None:
            self.started_us = chunk.capture_us
            self.started.set()

    def _resize(self, number: int, codec: str, width: int, height: int) -> None:
        track = self._tracks[number]
        if track.target is not None:
            self._finish(track)
            track.part += 1
        track.codec, track.width, track.height = codec, width, height

    def _finish(self, track: _Track) -> None:
        target, track.target = track.target, None
        if target is None:
            return
        try:
            target.close()
            if isinstance(target, _Ring) and target.origin_us is not None:
                self._kept_from.append(target.origin_us)
        except Exception as exc:
            if self.error is None:
                self.error = exc
            logger.error("recording %s: could not finish %s: %s", self._path, target.path, exc)
