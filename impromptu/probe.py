"""``impromptu probe URL``: a headless viewer that joins a shared desktop, receives its stream without decoding
it, checks it against the protocol's sequence and keyframe rules, and reports what it got.

Useful in CI to check that a desktop is shared and streaming, and as the viewer of load tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from impromptu.link import ViewerLink
from impromptu.rtc import IcePolicy
from impromptu.rtc.viewer import DesktopConnection
from impromptu.stream.framing import HEADER, HEADER_SIZE, SEQ_MOD, EncodedChunk, Reassembler

logger = logging.getLogger(__name__)

KEYFRAME_REQUEST_INTERVAL_S = 0.5
MAX_VIOLATIONS = 20
"""Violations kept verbatim in the report (all are counted)."""


def keyframe_in_payload(codec: str, data: bytes) -> bool | None:
    """Whether the encoded frame itself is a keyframe (H.264: holds an IDR slice; VP8: its key bit), or ``None``
    for a codec we cannot tell."""
    if codec.startswith("avc1"):
        return 5 in h264_nal_types(data)
    if codec == "vp8":
        return len(data) > 0 and data[0] & 1 == 0
    return None


def h264_nal_types(data: bytes) -> set[int]:
    """NAL unit types in an Annex B access unit."""
    types = set()
    at = data.find(b"\x00\x00\x01")
    while at >= 0 and at + 3 < len(data):
        types.add(data[at + 3] & 0x1F)
        at = data.find(b"\x00\x00\x01", at + 3)
    return types


@dataclass
class ProbeReport:
    url: str
    role: str = ""
    codec: str = ""
    width: int = 0
    height: int = 0
    connect_s: float | None = None
    """From start to both channels open."""
    first_keyframe_s: float | None = None
    """From the channels opening to the first complete keyframe."""
    seconds: float = 0.0
    """The measurement window: from the first keyframe to the end."""
    frames: int = 0
    """Complete frames from the first keyframe on (itself included)."""
    keyframes: int = 0
    bytes: int = 0
    fps: float = 0.0
    bitrate_kbps: float = 0.0
    missed: int = 0
    """Frames absent from the sequence after the first keyframe, for any reason."""
    skipped: int = 0
    """Of those, frames the desktop said it skipped because this viewer was behind."""
    lost: int = 0
    """Missed and not skipped: lost on the way (or too late to reassemble)."""
    undecodable: int = 0
    """Frames received after a loss and before the next keyframe: a decoder would have had to drop them."""
    keyframe_requests: int = 0
    viewers: int = 0
    """Viewers the desktop last said were watching (this one included)."""
    per_second: list[int] = field(default_factory=list)
    """Frames received in each second of the measurement window."""
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.violation_count == 0 and self.first_keyframe_s is not None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def format(self) -> str:
        def num(value: float | None, unit: str = "", digits: int = 1) -> str:
            return "—" if value is None else f"{value:.{digits}f}{unit}"

        rows = [
            ("link", f"{self.url} ({self.role or '?'})"),
            ("stream", f"{self.width}x{self.height} {self.codec}" if self.codec else "—"),
            ("connected after", num(self.connect_s, " s", 2)),
            ("first keyframe after", num(self.first_keyframe_s, " s", 2)),
            ("measured for", num(self.seconds, " s")),
            ("frames", f"{self.frames} ({self.keyframes} keyframes)"),
            ("frame rate", num(self.fps, " fps")),
            ("bitrate", num(self.bitrate_kbps, " kbit/s", 0)),
            ("frames missed", f"{self.missed} (skipped by the desktop: {self.skipped}, lost: {self.lost})"),
            ("undecodable", f"{self.undecodable} (keyframe requests: {self.keyframe_requests})"),
            ("viewers watching", str(self.viewers)),
            ("rule violations", str(self.violation_count)),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines += [f"  violation: {v}" for v in self.violations]
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)


class StreamCheck:
    """Counts one surface's frames and checks them against docs/protocol.md §4–§6:

    - the first frame a viewer gets is a keyframe;
    - sequence numbers only go forward (the reassembler guarantees it; a repeat is a violation);
    - a frame's keyframe flag agrees with its payload (H.264 IDR, VP8 key bit), and an H.264 keyframe carries its
      SPS and PPS, so a decoder can start on it.
    """

    def __init__(
        self,
        report: ProbeReport,
        request_keyframe: Callable[[], None],
        clock: Callable[[], float],
        lost_early: Callable[[], bool] = lambda: False,
    ) -> None:
        self._report = report
        self._lost_early = lost_early
        """Whether the reassembler has lost or dropped anything so far (a first keyframe may have been among it)."""
        self._request_keyframe = request_keyframe
        self._clock = clock
        self._opened_at: float | None = None
        self._first_key_at: float | None = None
        self._last_seq: int | None = None
        self._waiting_for_key = True
        self._last_request = -KEYFRAME_REQUEST_INTERVAL_S

    def opened(self) -> None:
        self._opened_at = self._clock()

    def violation(self, text: str) -> None:
        self._report.violation_count += 1
        if len(self._report.violations) < MAX_VIOLATIONS:
            self._report.violations.append(text)

    def frame(self, chunk: EncodedChunk, lost_before: bool) -> None:
        r = self._report
        now = self._clock()
        in_payload = keyframe_in_payload(r.codec, chunk.data)
        if in_payload is not None and in_payload != chunk.keyframe:
            flag = "keyframe" if chunk.keyframe else "delta frame"
            self.violation(f"frame {chunk.seq} is flagged as a {flag} but its payload says otherwise")
        if chunk.keyframe and r.codec.startswith("avc1") and not {7, 8} <= h264_nal_types(chunk.data):
            self.violation(f"keyframe {chunk.seq} lacks its SPS/PPS")
        if self._first_key_at is None:
            if not chunk.keyframe:
                if lost_before or self._lost_early():
                    # Its keyframe was lost on the (unreliable) way: a decoder waits for the next, and asks for it.
                    r.undecodable += 1
                    self._ask_for_keyframe(now)
                else:
                    self.violation(f"the first frame received ({chunk.seq}) is not a keyframe")
                return
            self._first_key_at = now
            if self._opened_at is not None:
                r.first_keyframe_s = now - self._opened_at
        elif self._last_seq is not None:
            step = (chunk.seq - self._last_seq) % SEQ_MOD
            if step == 0 or step >= SEQ_MOD // 2:
                self.violation(f"frame {chunk.seq} came after frame {self._last_seq}")
                return
            r.missed += step - 1
        self._last_seq = chunk.seq
        if lost_before:
            self._waiting_for_key = True
        if chunk.keyframe:
            self._waiting_for_key = False
            r.keyframes += 1
        elif self._waiting_for_key:
            r.undecodable += 1
            self._ask_for_keyframe(now)
        r.frames += 1
        r.bytes += len(chunk.data)
        second = int(now - self._first_key_at)
        r.per_second.extend([0] * (second + 1 - len(r.per_second)))
        r.per_second[second] += 1

    def _ask_for_keyframe(self, now: float) -> None:
        if now - self._last_request >= KEYFRAME_REQUEST_INTERVAL_S:
            self._last_request = now
            self._report.keyframe_requests += 1
            self._request_keyframe()

    def finish(self) -> None:
        r = self._report
        if self._first_key_at is not None:
            r.seconds = self._clock() - self._first_key_at
            whole = int(r.seconds)  # the last, partial second would read as a drop; silent seconds count as 0
            r.per_second = (r.per_second + [0] * whole)[:whole]
            if r.seconds > 0:
                r.fps = r.frames / r.seconds
                r.bitrate_kbps = r.bytes * 8 / r.seconds / 1000
        r.lost = max(0, r.missed - r.skipped)

    @property
    def started(self) -> bool:
        return self._first_key_at is not None


class Probe:
    """Receives from ``link`` until ``seconds`` after the first keyframe (or ``stop()``), then reports."""

    def __init__(
        self,
        url: str,
        ice: IcePolicy,
        *,
        ssl_context: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link = ViewerLink.parse(url)
        self.report = ProbeReport(url=f"{self.link.base_url}/", role=self.link.role.value)  # never the key
        self._clock = clock
        self._surface: int | None = None
        self._reassembler = Reassembler(clock)
        self._check = StreamCheck(
            self.report,
            self._request_keyframe,
            clock,
            lambda: self._reassembler.lost_frames > 0 or self._reassembler.dropped_fragments > 0,
        )
        self._started = asyncio.Event()
        self._conn = DesktopConnection(self.link, ice, self._video, self._control, ssl_context)
        self._early: list[bytes] = []

    def _request_keyframe(self) -> None:
        if self._surface is not None:
            self._conn.send_control({"type": "keyframe.request", "surface": self._surface})

    async def run(
        self, seconds: float, connect_timeout: float = 15.0, first_frame_timeout: float = 10.0
    ) -> ProbeReport:
        began = self._clock()
        try:
            await self._conn.connect(connect_timeout)
            self.report.connect_s = self._clock() - began
            self._check.opened()
            closed = asyncio.ensure_future(self._conn.closed.wait())
            try:
                started = asyncio.ensure_future(self._started.wait())
                done, _ = await asyncio.wait(
                    {started, closed}, timeout=first_frame_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                started.cancel()
                if not self._started.is_set():
                    what = "the connection closed" if closed in done else f"none within {first_frame_timeout:.0f} s"
                    self.report.error = f"no keyframe: {what}"
                    return self.report
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(closed), seconds)
                if self._conn.closed.is_set():
                    self.report.error = "the connection closed (the desktop stopped, or ICE consent expired)"
            finally:
                closed.cancel()
        except Exception as exc:  # reported, not raised: a probe's job is to say what went wrong
            self.report.error = str(exc) or type(exc).__name__
        finally:
            self._check.finish()
            await self._conn.close()
        return self.report

    def _control(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        r = self.report
        if kind == "config":
            if self._surface is None:
                self._surface = int(message.get("surface", 0))
            if message.get("surface") == self._surface:
                r.codec = str(message.get("codec", ""))
                r.width, r.height = int(message.get("width", 0)), int(message.get("height", 0))
                early, self._early = self._early, []
                for data in early:
                    self._video(data)
        elif kind == "stream.skipped" and message.get("surface") == self._surface:
            frames = message.get("frames")
            if isinstance(frames, int) and frames > 0:
                r.skipped += frames
        elif kind == "presence":
            viewers = message.get("viewers")
            if isinstance(viewers, int):
                r.viewers = viewers

    def _video(self, data: bytes) -> None:
        if self._surface is None:
            if len(self._early) < 256:  # video overtook the first config: keep it, bounded
                self._early.append(data)
            return
        if len(data) >= HEADER_SIZE and HEADER.unpack_from(data)[2] != self._surface:
            return  # another surface (a shared window, protocol.md §8): its own frame numbers; the probe checks one
        done = self._reassembler.push(data)
        if done is None or done.chunk.surface != self._surface:
            return
        self._check.frame(done.chunk, done.lost_before)
        if self._check.started:
            self._started.set()


async def run_probe(url: str, seconds: float, ice: IcePolicy, ssl_context: Any = None) -> ProbeReport:
    return await Probe(url, ice, ssl_context=ssl_context).run(seconds)
