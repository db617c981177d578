"""Recordings: the encoded stream muxed as it is (no second encode), on the capture clock, playable after a
SIGKILL, optionally only the last N seconds; with no viewer needed."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from impromptu.display import WindowInfo
from impromptu.encode import Encoder
from impromptu.errors import RecordError
from impromptu.stream import record
from impromptu.stream.framing import EncodedChunk
from impromptu.stream.record import Recording, check_path, surface_path
from tests.harness import IMPROMPTU, desktop_args, run_desktop, wait_for, wait_until
from tests.pyviewer import sharing
from tests.xclient import XWindow

T0 = 1_700_000_000_000_000
"""A capture clock (µs since the epoch) for synthetic streams."""


def frames_of(path: Path) -> list[tuple[float, tuple[int, int, int]]]:
    """Every picture of ``path``: its time (s) and the colour of its middle pixel."""
    out = []
    with av.open(str(path)) as container:
        for picture in container.decode(video=0):
            rgb = picture.to_ndarray(format="rgb24")
            pixel = rgb[rgb.shape[0] // 2, rgb.shape[1] // 2]
            out.append((float(picture.pts * picture.time_base), (int(pixel[0]), int(pixel[1]), int(pixel[2]))))
    return out


def duration_of(path: Path) -> float:
    """The file's duration (s) as a player computes it: the last packet's end."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        end = 0.0
        for packet in container.demux(stream):
            if packet.pts is not None:
                end = max(end, float((packet.pts + (packet.duration or 0)) * stream.time_base))
        return end


def colour(rgb: tuple[int, int, int]) -> str:
    names = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    for name, want in names.items():
        if all(abs(a - b) < 40 for a, b in zip(rgb, want, strict=True)):
            return name
    return "other"


class Synthetic:
    """A synthetic surface: solid pictures of 64x48 encoded by the real ``Encoder``, on a made-up capture clock."""

    def __init__(self, encoder: str | None = None, size: tuple[int, int] = (64, 48)) -> None:
        self.encoder = Encoder(size[0], size[1], 30, encoder)
        self.size = size
        self.seq = 0

    def chunk(self, at_s: float, rgb: tuple[int, int, int], keyframe: bool = False) -> EncodedChunk:
        w, h = self.size
        bgra = np.empty((h, w, 4), np.uint8)
        bgra[:] = (rgb[2], rgb[1], rgb[0], 255)
        capture_us = T0 + int(at_s * 1_000_000)
        data, key = self.encoder.encode(bgra.tobytes(), capture_us, keyframe)
        self.seq += 1
        return EncodedChunk(0, self.seq, key, capture_us, data)


def recording(path: Path, synthetic: Synthetic, segment_s: float | None = None) -> tuple[Recording, list[int]]:
    asked: list[int] = []

    def request(number: int) -> bool:
        asked.append(number)
        return False  # a synthetic surface makes no frame of its own

    w, h = synthetic.size
    return Recording(path, {0: (synthetic.encoder.codec, w, h)}, request, segment_s=segment_s), asked


async def until_written(rec: Recording, capture_us: int) -> None:
    await wait_until(lambda: (rec.ended_us or 0) >= capture_us)


# The muxer on its own ----------------------------------------------------------------------------------------


def test_file_names_are_checked(tmp_path: Path) -> None:
    check_path(tmp_path / "a.mp4", "avc1.42E01F")
    check_path(tmp_path / "a.webm", "vp8")
    with pytest.raises(RecordError, match=r"\.mp4 \(H\.264\) or \.webm"):
        check_path(tmp_path / "a.avi")
    with pytest.raises(RecordError, match=r"goes in a \.mp4 file"):
        check_path(tmp_path / "a.webm", "avc1.42E01F")
    with pytest.raises(RecordError, match="does not exist"):
        check_path(tmp_path / "nowhere" / "a.mp4")
    assert surface_path(tmp_path / "a.mp4", 0) == tmp_path / "a.mp4"
    assert surface_path(tmp_path / "a.mp4", 2) == tmp_path / "a-3.mp4"
    assert surface_path(tmp_path / "a.mp4", 1, 2) == tmp_path / "a-2.2.mp4"


@pytest.mark.parametrize(("suffix", "encoder"), [(".mp4", "libx264"), (".webm", "libvpx")])
async def test_times_follow_the_capture_clock_and_a_file_cut_short_plays(
    tmp_path: Path, suffix: str, encoder: str
) -> None:
    """Sparse frames keep their capture times; the file as it is mid-recording (what SIGKILL leaves) plays."""
    path = tmp_path / f"rec{suffix}"
    synthetic = Synthetic(encoder)
    rec, asked = recording(path, synthetic)
    rec.start()
    assert asked == [0], "a recording asks for a keyframe at once"
    synthetic.chunk(-1.0, (255, 0, 0))  # (an encoder's first frame is a keyframe: made before the recording)
    rec.feed(synthetic.chunk(0.0, (255, 0, 0)))  # not a keyframe: dropped, a recording starts at one
    times = [0.5, 0.6, 2.0, 2.1, 5.0, 5.1, 5.2]
    for t in times:
        rec.feed(synthetic.chunk(t, (255, 0, 0) if t < 5 else (0, 0, 255), keyframe=t in (0.5, 5.0)))
    await until_written(rec, T0 + 5_200_000)
    cut = tmp_path / f"cut{suffix}"
    shutil.copy(path, cut)  # the file as a SIGKILL would leave it
    rec.feed(synthetic.chunk(9.0, (0, 255, 0)))
    await rec.close()
    assert rec.paths == [path] and rec.error is None and rec.dropped == 0
    assert rec.started_us == T0 + 500_000 and rec.ended_us == T0 + 9_000_000

    frames = frames_of(path)
    assert [round(t, 3) for t, _ in frames] == [round(t - 0.5, 3) for t in [*times, 9.0]], "pts = capture time"
    assert [colour(c) for _, c in frames] == ["red"] * 4 + ["blue"] * 3 + ["green"]
    assert 8.5 <= duration_of(path) <= 8.6, "to the last frame's end (one frame)"
    # Cut short: every fragment (cut at least every FRAGMENT_S, and at keyframes) before the last is there.
    cut_frames = frames_of(cut)
    assert len(cut_frames) >= 4 and [t for t, _ in cut_frames] == [t for t, _ in frames[: len(cut_frames)]]
    assert colour(cut_frames[0][1]) == "red"


async def test_only_the_last_seconds_are_kept_and_the_file_is_whole_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "ring.mp4"
    synthetic = Synthetic()
    rec, _ = recording(path, synthetic, segment_s=2.0)  # segments of about 1 s
    rec.start()
    t = 0.0
    while t < 6.0:  # a keyframe every second, as the recording asks, and frames between
        rec.feed(synthetic.chunk(t, (255, 0, 0) if t < 4 else (0, 0, 255), keyframe=t % 1.0 == 0))
        t = round(t + 0.25, 2)
    await until_written(rec, T0 + 5_750_000)
    folder = tmp_path / ".ring.mp4.segments"
    # Meanwhile (and after a SIGKILL): the file holds at least 2 s up to the last complete segment; the folder,
    # the segments still needed, the newest last, each playable.
    assert 2.0 <= duration_of(path) <= 3.0
    segments = sorted(folder.iterdir())
    assert 2 <= len(segments) <= 4, segments
    for segment in segments[:-1]:  # (the newest is still in its first fragment: not on disk yet)
        assert frames_of(segment)
    await rec.close()
    assert not folder.exists() and rec.paths == [path]
    frames = frames_of(path)
    assert 2.0 <= duration_of(path) <= 3.1
    assert colour(frames[-1][1]) == "blue" and colour(frames[0][1]) == "red"
    assert rec.ended_us is not None and rec.started_us is not None
    assert 2.0 <= (rec.ended_us - rec.started_us) / 1e6 <= 3.0, "started_us: the first frame kept"


async def test_a_resize_goes_on_in_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "rec.mp4"
    small, large = Synthetic(size=(64, 48)), Synthetic(size=(96, 64))
    rec, _ = recording(path, small)
    rec.start()
    rec.feed(small.chunk(0.0, (255, 0, 0), keyframe=True))
    rec.feed(small.chunk(0.5, (255, 0, 0)))
    rec.resized(0, large.encoder.codec, 96, 64)
    large.seq = small.seq
    rec.feed(large.chunk(1.0, (0, 0, 255)))  # the new encoder's first frame is a keyframe
    rec.feed(large.chunk(1.5, (0, 0, 255)))
    await rec.close()
    assert rec.paths == [path, tmp_path / "rec.1.mp4"]
    with av.open(str(rec.paths[1])) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (96, 64)
    assert [colour(c) for _, c in frames_of(rec.paths[0])] == ["red", "red"]
    assert [colour(c) for _, c in frames_of(rec.paths[1])] == ["blue", "blue"]


async def test_a_stalled_writer_drops_up_to_a_keyframe_and_asks_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthetic = Synthetic()
    rec, asked = recording(tmp_path / "rec.mp4", synthetic)
    rec.start()
    rec.feed(synthetic.chunk(0.0, (255, 0, 0), keyframe=True))
    monkeypatch.setattr(record, "QUEUE_MAX_BYTES", 0)  # the queue is full from now on
    rec.feed(synthetic.chunk(0.1, (255, 0, 0)))
    rec.feed(synthetic.chunk(0.2, (255, 0, 0)))
    assert rec.dropped == 1 and asked == [0, 0], "one keyframe asked for, not one per dropped frame"
    monkeypatch.setattr(record, "QUEUE_MAX_BYTES", 1 << 20)
    rec.feed(synthetic.chunk(0.3, (0, 0, 255)))  # not a keyframe: still dropped, unqueued
    rec.feed(synthetic.chunk(0.4, (0, 0, 255), keyframe=True))
    await rec.close()
    assert [round(t, 1) for t, _ in frames_of(tmp_path / "rec.mp4")] == [0.0, 0.4]


# A session: no viewer needed, started and stopped many times ------------------------------------------------


async def test_a_session_records_with_no_viewer_and_many_times(xvfb_display: str, tmp_path: Path) -> None:
    painter = XWindow(xvfb_display, 0, 0, 640, 480)
    painter.fill(0xFF0000)
    try:
        async with sharing(xvfb_display) as (session, _server):
            assert session.viewers == 0
            worker = session.surfaces[0].worker
            assert worker is not None
            asked: list[str] = []
            request_keyframe = worker.request_keyframe
            worker.request_keyframe = lambda: (asked.append("keyframe"), request_keyframe())[1]  # type: ignore[method-assign]
            rec = session.start_recording(tmp_path / "one.mp4")
            assert asked == [], "activating the workers asked for the keyframe: not twice"
            await until_written(rec, 1)  # a first frame, though nobody watches
            painter.fill(0x0000FF)
            blue_us = time.time_ns() // 1000
            await until_written(rec, blue_us)
            await session.stop_recording(rec)
            await session.stop_recording(rec)  # idempotent
            assert not session.recordings and not worker._active, "no viewer, no recording: capture stops"
            assert rec.started_us is not None and rec.ended_us is not None
            assert rec.ended_us >= blue_us and rec.ended_us - rec.started_us > 0
            frames = frames_of(tmp_path / "one.mp4")
            assert colour(frames[0][1]) == "red" and colour(frames[-1][1]) == "blue"

            # What the pytest plugin does: one recording per test, many in a session, each quick.
            for n in range(5):
                painter.fill(0x00FF00 if n % 2 else 0xFF0000)
                rec = session.start_recording(tmp_path / f"test-{n}.mp4")
                await until_written(rec, 1)
                await session.stop_recording(rec)
                assert rec.paths == [tmp_path / f"test-{n}.mp4"] and frames_of(rec.paths[0])
            # Stopped at once, within the workers' keyframe rate limit of the last start: closing waits for the
            # keyframe held back, and the file is there.
            rec = session.start_recording(tmp_path / "at-once.mp4")
            await session.stop_recording(rec)
            assert rec.started.is_set() and frames_of(tmp_path / "at-once.mp4")
            with pytest.raises(RecordError, match=r"goes in a \.mp4 file"):
                session.start_recording(tmp_path / "x.webm")
            assert not worker._active
    finally:
        painter.close()


async def test_each_window_has_its_file_and_a_resize_goes_on_in_another(
    xvfb_display: str, tmp_path: Path, control: Any, painters: Callable[..., Any]
) -> None:
    first = painters(10, 10, 160, 120, (0xFF0000,))
    second = painters(300, 200, 200, 100, (0x0000FF,))
    windows = tuple(
        WindowInfo(p.id, title, "", "", None, x, y, w, h, True)
        for p, title, x, y, w, h in ((first, "first", 10, 10, 160, 120), (second, "second", 300, 200, 200, 100))
    )
    async with sharing(xvfb_display, windows=windows) as (session, _server):
        rec = session.start_recording(tmp_path / "win.mp4")
        await wait_until(lambda: len(rec.paths) == 2)
        control.create_resource_object("window", first.id).configure(width=240, height=180)
        control.sync()
        await wait_until(lambda: len(rec.paths) == 3)
        # A resized window is blank until its app repaints it: stop once the new file holds the repainted window
        # (fragments reach the disk at each keyframe, one at least every KEYFRAME_INTERVAL_S on a still window).
        await wait_until(lambda: last_colour(tmp_path / "win.1.mp4") == "red", 15)
        await session.stop_recording(rec)
    assert rec.paths == [tmp_path / "win.mp4", tmp_path / "win.1.mp4", tmp_path / "win-2.mp4"]  # by surface
    for path, size, name in zip(rec.paths, [(160, 120), (240, 180), (200, 100)], ["red", "red", "blue"], strict=True):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == size
        assert colour(frames_of(path)[-1][1]) == name


# The command line -------------------------------------------------------------------------------------------

COLOURS_APP = "xsetroot -solid red; sleep 3; xsetroot -solid green; sleep 1.5; xsetroot -solid blue; exec sleep 300"


def record_desktop(path: Path, *extra: str, app: str = COLOURS_APP) -> Any:
    return run_desktop(
        "vdisplay", "run", "--size", "320x240", *desktop_args("--record", str(path), *extra), "--", "sh", "-c", app
    )


def wait_for_file(path: Path, check: Callable[[Path], bool], what: str, timeout: float = 30) -> None:
    def ready() -> bool:
        try:
            return path.exists() and check(path)
        except (av.error.FFmpegError, OSError, IndexError):
            return False  # not yet a file with a fragment

    wait_for(ready, timeout, what, interval=0.2)


def last_colour(path: Path) -> str | None:
    """The colour of the last picture on disk so far, or ``None`` while the file has none."""
    try:
        frames = frames_of(path)
    except (av.error.FFmpegError, OSError):
        return None
    return colour(frames[-1][1]) if frames else None


def colours_seen(path: Path) -> list[str]:
    seen: list[str] = []
    for _, rgb in frames_of(path):
        name = colour(rgb)
        if not seen or seen[-1] != name:
            seen.append(name)
    return seen


def test_a_killed_desktop_leaves_a_playable_recording(tmp_path: Path) -> None:
    path = tmp_path / "killed.mp4"
    with record_desktop(path) as desktop:
        started = time.monotonic()
        assert any(f"recording to {path}" in line for line in desktop.stderr)
        # No viewer ever connects: the recording alone makes the surface encode.
        wait_for_file(path, lambda p: "blue" in colours_seen(p) and duration_of(p) >= 5.0, "blue, 5 s on disk")
        desktop.kill()
        wall = time.monotonic() - started
    frames = frames_of(path)
    assert len(frames) >= 3
    assert colours_seen(path)[-2:] == ["green", "blue"]
    # All but the last few seconds (a keyframe is asked for every KEYFRAME_INTERVAL_S, cutting a fragment).
    assert wall - record.KEYFRAME_INTERVAL_S - 2 * record.FRAGMENT_S - 0.5 <= duration_of(path) <= wall + 0.5


def test_a_failed_recording_makes_the_exit_status_1(tmp_path: Path) -> None:
    path = tmp_path / "full.mp4"
    path.symlink_to("/dev/full")  # a disk that is full
    with record_desktop(path, app="sleep 3") as desktop:  # (sharing goes on meanwhile, until the app exits)
        assert desktop.proc.wait(30) == 1
        assert desktop.proc.stderr is not None
        lines = desktop.proc.stderr.read().splitlines()
    assert any("failed, and stops here (sharing goes on)" in line for line in lines), lines
    errors = [line for line in lines if line.startswith("impromptu: error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"impromptu: error: recording {path} failed: "), lines


def test_an_idle_recording_is_small_and_plays_at_true_speed(tmp_path: Path) -> None:
    path = tmp_path / "idle.mp4"
    with record_desktop(path) as desktop:
        started = time.monotonic()
        wait_for_file(path, lambda p: "blue" in colours_seen(p) and duration_of(p) >= 6.0, "6 s recorded")
        stopped = time.monotonic()
        assert desktop.interrupt(timeout=10) == 130
        wall = stopped - started
        assert any(f"recorded {path}" in line for line in desktop.proc.stderr.read().splitlines())  # type: ignore[union-attr]
    duration = duration_of(path)
    assert wall - 0.3 <= duration <= wall + 1.5, (duration, wall)
    frames = frames_of(path)
    assert len(frames) < 2 * duration, "frames only when the screen changed (and periodic keyframes)"
    assert path.stat().st_size / duration < 5_000, "bytes per second of an idle screen"
    first = {name: t for t, rgb in reversed(frames) if (name := colour(rgb)) != "other"}
    assert first["blue"] - first["green"] == pytest.approx(1.5, abs=0.35), "the app's 1.5 s between colours"


@pytest.fixture
def segment_run(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    path = tmp_path / "last.mp4"
    app = "i=0; while true; do i=$((i+1)); xsetroot -solid \\#$(printf %02x $((i % 256)))0000; sleep 0.2; done"
    with record_desktop(path, "--record-segment", "2", app=app) as desktop:
        folder = tmp_path / ".last.mp4.segments"
        # Segments of about 1 s: wait until the sixth starts (over 5 s recorded).
        wait_for(lambda: any(p.name.startswith("000006-") for p in folder.glob("*")), 30, "a sixth segment")
        yield path, desktop


def test_record_segment_keeps_the_last_seconds(segment_run: tuple[Path, Any]) -> None:
    path, desktop = segment_run
    assert 2.0 <= duration_of(path) <= 3.5, "meanwhile the file holds the last complete segments"
    assert desktop.interrupt(timeout=10) == 130
    assert not path.with_name(".last.mp4.segments").exists()
    assert 2.0 <= duration_of(path) <= 3.5
    assert len(frames_of(path)) >= 8


def test_record_segment_after_sigkill(segment_run: tuple[Path, Any]) -> None:
    path, desktop = segment_run
    desktop.kill()
    assert 2.0 <= duration_of(path) <= 3.5, "the file: at least the last 2 s up to the last complete segment"
    segments = sorted(path.with_name(".last.mp4.segments").iterdir())
    assert 2 <= len(segments) <= 5
    assert all(frames_of(segment) for segment in segments[:-1]), "complete segments play"
    frames_of(segments[-1])  # the one being written: as far as it got (may hold no fragment yet)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--record", "x.avi"], ".mp4 (H.264) or .webm"),
        (["--record", "x.webm"], "goes in a .mp4 file"),
        (["--record", "/nowhere/x.mp4"], "does not exist"),
        (["--record-segment", "5"], "goes with --record"),
        (["--record", "x.mp4", "--record-segment", "0"], "above 0"),
    ],
)
def test_bad_record_options_are_one_line_usage_errors(args: list[str], text: str) -> None:
    result = subprocess.run(
        [*IMPROMPTU, "vdisplay", "run", *args, "--", "true"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("impromptu: error: ") and text in lines[0], result.stderr


async def test_feed_never_waits_for_a_busy_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """feed() queues while the writer is stuck (it never touches the disk), and drops once the queue is full."""
    synthetic = Synthetic()
    rec, asked = recording(tmp_path / "rec.mp4", synthetic)
    writing, go_on = threading.Event(), threading.Event()
    write = rec._write

    def stuck(chunk: EncodedChunk) -> None:  # on the writer thread: a disk that does not answer
        writing.set()
        go_on.wait()
        write(chunk)

    monkeypatch.setattr(rec, "_write", stuck)
    chunks = [synthetic.chunk(i / 30, (255, 0, 0), keyframe=i == 0) for i in range(6)]
    rec.start()
    try:
        rec.feed(chunks[0])
        assert await asyncio.to_thread(writing.wait, 10), "the writer took the first chunk"
        monkeypatch.setattr(record, "QUEUE_MAX_BYTES", sum(len(c.data) for c in chunks[1:4]))
        for chunk in chunks[1:4]:
            rec.feed(chunk)
        assert [item.seq for _, item in rec._queue] == [2, 3, 4] and rec.dropped == 0 and asked == [0]
        rec.feed(chunks[4])  # the queue is full: dropped, and a keyframe asked for
        rec.feed(chunks[5])  # not a keyframe: dropped too, and no second request
        assert len(rec._queue) == 3 and rec.dropped == 1 and asked == [0, 0]
        assert not go_on.is_set()
    finally:
        go_on.set()
    await rec.close()
    assert len(frames_of(tmp_path / "rec.mp4")) == 4


async def test_a_failed_writer_is_raised_at_close_and_sharing_is_not_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthetic = Synthetic()
    rec, _ = recording(tmp_path / "rec.mp4", synthetic)
    full = OSError(28, "No space left on device")

    def fail(self: Any, chunk: EncodedChunk) -> None:
        raise full

    rec.start()
    rec.feed(synthetic.chunk(0.0, (255, 0, 0), keyframe=True))
    await wait_until(rec.started.is_set)
    monkeypatch.setattr(record._File, "write", fail)
    rec.feed(synthetic.chunk(0.1, (255, 0, 0)))
    await wait_until(lambda: rec.error is not None)
    rec.feed(synthetic.chunk(0.2, (255, 0, 0)))  # (still fed: nothing raises where the stream is)
    with pytest.raises(RecordError, match=r"recording .*rec\.mp4 failed: .*No space left") as caught:
        await rec.close()
    assert caught.value.__cause__ is full and rec.closed
    with pytest.raises(RecordError, match="No space left"):
        await rec.close()  # idempotent: says it again
    assert [round(t, 1) for t, _ in frames_of(tmp_path / "rec.mp4")] == [0.0], "the file as far as it got"


async def test_started_is_an_event_and_started_us_is_set_once(tmp_path: Path) -> None:
    one, two = Synthetic(), Synthetic()
    asked: list[int] = []
    codec = one.encoder.codec
    rec = Recording(tmp_path / "rec.mp4", {0: (codec, 64, 48), 1: (codec, 64, 48)}, lambda n: asked.append(n) is None)
    rec.start()
    assert not rec.started.is_set() and rec.started_us is None
    rec.feed(one.chunk(0.5, (255, 0, 0), keyframe=True))
    assert await asyncio.to_thread(rec.started.wait, 10)
    assert rec.started_us == T0 + 500_000
    second = two.chunk(0.4, (0, 0, 255), keyframe=True)  # captured earlier, written later
    rec.feed(EncodedChunk(1, second.seq, second.keyframe, second.capture_us, second.data))
    await until_written(rec, T0 + 500_000)
    closing = asyncio.ensure_future(rec.close())
    await wait_until(lambda: len(asked) >= 4)  # closing asked both for a last frame
    rec.feed(one.chunk(0.6, (255, 0, 0)))
    rec.feed(EncodedChunk(1, 2, False, T0 + 600_000, two.chunk(0.6, (0, 0, 255)).data))
    await closing
    assert rec.started_us == T0 + 500_000, "the first frame written: not rewritten by another surface's"
    assert rec.ended_us is not None and rec.ended_us >= T0 + 600_000


async def test_a_recording_closed_before_its_first_keyframe(tmp_path: Path) -> None:
    synthetic = Synthetic()
    rec = Recording(tmp_path / "rec.mp4", {0: (synthetic.encoder.codec, 64, 48)}, lambda n: True)
    rec.start()
    closing = asyncio.ensure_future(rec.close())
    await wait_until(lambda: rec._last_frame is not None)  # closing waits for a last frame
    # The first keyframe, held back by the workers' rate limit, comes only now.
    assert not closing.done()
    rec.feed(synthetic.chunk(0.0, (255, 0, 0), keyframe=True))
    await closing
    assert rec.started.is_set() and len(frames_of(tmp_path / "rec.mp4")) == 1

    # None comes at all (a paused window): said so, rather than no file and no word.
    rec, _ = recording(tmp_path / "none.mp4", synthetic)
    rec.start()
    with pytest.raises(RecordError, match=r"none\.mp4 failed: nothing was recorded: no keyframe came within"):
        await rec.close()
    assert not (tmp_path / "none.mp4").exists()


async def test_a_session_closes_its_recordings_together_and_says_which_failed(
    xvfb_display: str, tmp_path: Path
) -> None:
    painter = XWindow(xvfb_display, 0, 0, 640, 480)
    painter.fill(0xFF0000)
    try:
        with pytest.raises(RecordError, match=r"bad\.mp4 failed: the disk"):
            async with sharing(xvfb_display) as (session, _server):
                good = session.start_recording(tmp_path / "good.mp4")
                bad = session.start_recording(tmp_path / "bad.mp4")
                await wait_until(lambda: good.started.is_set() and bad.started.is_set())
                both_closing = asyncio.Event()
                entered: list[Recording] = []

                def together(rec: Recording) -> Callable[[], Any]:
                    close = rec._close

                    async def closing() -> None:
                        entered.append(rec)
                        if len(entered) == 2:
                            both_closing.set()
                        await asyncio.wait_for(both_closing.wait(), 10)  # one after the other: never
                        await close()

                    return closing

                good._close = together(good)  # type: ignore[method-assign]
                bad._close = together(bad)  # type: ignore[method-assign]

                def fail(chunk: EncodedChunk) -> None:
                    raise OSError("the disk is full")

                bad._write = fail  # type: ignore[method-assign]
        assert not session.recordings and good.closed and bad.closed
        assert frames_of(tmp_path / "good.mp4") and bad.error is not None
    finally:
        painter.close()


def test_share_takes_the_options_and_the_environment_too() -> None:
    env = {**os.environ, "IMPROMPTU_RECORD": "x.mkv"}
    result = subprocess.run(
        [*IMPROMPTU, "share", "--display", ":987"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 2 and "--record" in result.stderr and ".webm (VP8)" in result.stderr, result.stderr
