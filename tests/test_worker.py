"""The capture → encode worker: forced keyframes are rate-limited, so a burst of joins or requests costs every
viewer one keyframe per 250 ms, not one per request."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np

from impromptu.capture import Frame
from impromptu.encode import Encoder
from impromptu.encode.worker import EncodeWorker
from impromptu.stream.framing import EncodedChunk


class MovingPicture:
    """A surface that changes on every grab (no change descriptor: the worker polls at its frame rate)."""

    size = (64, 48)

    def __init__(self) -> None:
        self.grabs = 0

    def fileno(self) -> int | None:
        return None

    def changed(self) -> bool:
        return True

    def grab(self) -> Frame:
        self.grabs += 1
        pixels = np.full((48, 64, 4), self.grabs % 256, np.uint8)
        return Frame(pixels.tobytes(), 64, 48, int(time.time() * 1e6))

    def close(self) -> None:
        pass


async def test_a_burst_of_keyframe_requests_yields_one_keyframe_per_interval() -> None:
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[EncodedChunk] = asyncio.Queue()
    failed: list[BaseException] = []
    worker = EncodeWorker(MovingPicture(), Encoder(64, 48, 60), 0, chunks.put_nowait, failed.append, loop)
    worker.start()
    worker.set_active(True)
    keyframe_times: list[float] = []
    try:
        for _ in range(60):  # one second at 60 fps, with a keyframe asked for before every frame
            worker.request_keyframe()
            chunk = await asyncio.wait_for(chunks.get(), 5)
            if chunk.keyframe:
                keyframe_times.append(chunk.capture_us / 1e6)
    finally:
        await asyncio.to_thread(worker.stop)
    assert not failed
    assert len(keyframe_times) >= 2, "requests are honoured"
    gaps = [b - a for a, b in itertools.pairwise(keyframe_times)]
    assert min(gaps) >= 0.25 * 0.95, gaps  # docs/protocol.md §6: one per 250 ms (grab times; clocks differ by µs)


class StillPicture:
    """A surface that never changes after its first grab (as an idle desktop reports through DAMAGE)."""

    size = (64, 48)

    def __init__(self, level: int) -> None:
        self.level = level
        self.grabs = 0

    def fileno(self) -> int | None:
        return None

    def changed(self) -> bool:
        return self.grabs == 0

    def grab(self) -> Frame:
        self.grabs += 1
        pixels = np.full((48, 64, 4), self.level, np.uint8)
        return Frame(pixels.tobytes(), 64, 48, int(time.time() * 1e6))

    def close(self) -> None:
        pass


async def _snapshot(worker: EncodeWorker) -> bytes:
    loop = asyncio.get_running_loop()
    taken: asyncio.Future[bytes] = loop.create_future()
    worker.snapshot(lambda frame: loop.call_soon_threadsafe(taken.set_result, bytes(frame.data)))
    return await asyncio.wait_for(taken, 5)


async def test_a_snapshot_while_nobody_watches_grabs_once_and_encodes_nothing() -> None:
    loop = asyncio.get_running_loop()
    chunks: list[EncodedChunk] = []
    source = StillPicture(77)
    worker = EncodeWorker(source, Encoder(64, 48, 30), 0, chunks.append, lambda exc: None, loop)
    worker.start()
    try:
        picture = await _snapshot(worker)
        assert set(picture) == {77}
        assert source.grabs == 1
        await _snapshot(worker)
        assert source.grabs == 2
    finally:
        await asyncio.to_thread(worker.stop)
    assert chunks == []


async def test_a_snapshot_while_watched_is_the_next_frame_even_on_a_still_surface() -> None:
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[EncodedChunk] = asyncio.Queue()
    source = StillPicture(140)
    worker = EncodeWorker(source, Encoder(64, 48, 30), 0, chunks.put_nowait, lambda exc: None, loop)
    worker.start()
    worker.set_active(True)
    try:
        await asyncio.wait_for(chunks.get(), 5)  # the first keyframe
        grabs = source.grabs
        picture = await _snapshot(worker)
        assert set(picture) == {140}
        # Served by one grab, which was also encoded and sent: the viewers miss no change it swallowed.
        await asyncio.wait_for(chunks.get(), 5)
        assert source.grabs == grabs + 1
    finally:
        await asyncio.to_thread(worker.stop)
