"""Fan-out: every viewer gets every frame from its first keyframe on; a backed-up viewer skips alone."""

from __future__ import annotations

from collections.abc import Callable

from impromptu.stream.framing import EncodedChunk, Reassembler
from impromptu.stream.hub import MAX_BUFFERED, MIN_BUFFERED, Hub


class Sink:
    def __init__(self, name: str) -> None:
        self.id = name
        self.buffered_amount = 0
        self.reassembler = Reassembler()
        self.frames: list[int] = []

        self.drained: list[tuple[int, Callable[[], None]]] = []

    def send_video(self, message: bytes) -> None:
        done = self.reassembler.push(message)
        if done is not None:
            self.frames.append(done.chunk.seq)

    def notify_drained(self, threshold: int, callback: Callable[[], None]) -> None:
        self.drained.append((threshold, callback))


def chunk(seq: int, key: bool = False) -> EncodedChunk:
    return EncodedChunk(0, seq, key, seq, bytes([seq % 256]) * 40_000)


def test_viewers_start_at_a_keyframe_and_then_get_every_frame() -> None:
    requests: list[int] = []
    hub = Hub(lambda: requests.append(1))
    early, late = Sink("early"), Sink("late")
    hub.add(early)
    assert len(requests) == 1, "a new viewer asks for a keyframe"
    for seq in range(0, 5):
        hub.publish(chunk(seq, key=seq in (0, 3)))
        if seq == 1:
            hub.add(late)
    assert early.frames == [0, 1, 2, 3, 4]
    assert late.frames == [3, 4], "the late joiner starts at the next keyframe"


def test_a_backed_up_viewer_skips_alone_and_asks_for_one_keyframe_when_drained() -> None:
    requests: list[int] = []
    told: list[tuple[str, int]] = []
    hub = Hub(lambda: requests.append(1), lambda viewer, frames: told.append((viewer, frames)))
    fast, slow = Sink("fast"), Sink("slow")
    hub.add(fast)
    hub.add(slow)
    requests.clear()
    hub.publish(chunk(0, key=True))
    slow.buffered_amount = hub.limit() + 1
    for seq in range(1, 20):
        hub.publish(chunk(seq))
    assert requests == [], "no keyframe storm while a viewer is behind"
    slow.buffered_amount = hub.limit() // 4 + 1
    hub.publish(chunk(20))
    assert requests == [], "still draining"
    slow.buffered_amount = 0
    hub.publish(chunk(21))
    assert requests == [1], "one keyframe once it has drained"
    hub.publish(chunk(22, key=True))
    hub.publish(chunk(23))
    assert fast.frames == list(range(24))
    assert slow.frames == [0, 22, 23]
    assert told == [("slow", 21)], "the viewer is told how many frames it missed, once it resumes"
    assert hub.skipped("slow") == 21 and hub.skipped("fast") == 0


def test_a_late_joiner_waiting_for_its_first_keyframe_has_skipped_nothing() -> None:
    told: list[tuple[str, int]] = []
    hub = Hub(lambda: None, lambda viewer, frames: told.append((viewer, frames)))
    hub.publish(chunk(0, key=True))
    late = Sink("late")
    hub.add(late)
    for seq in range(1, 4):
        hub.publish(chunk(seq, key=seq == 3))
    assert late.frames == [3] and told == []


def test_removed_viewers_get_nothing() -> None:
    hub = Hub(lambda: None)
    sink = Sink("gone")
    hub.add(sink)
    hub.remove("gone")
    hub.publish(chunk(0, key=True))
    assert sink.frames == [] and len(hub) == 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_how_far_behind_a_viewer_may_be_follows_the_bitrate() -> None:
    """Half a second of the stream may wait for a viewer: never less than a keyframe needs, never unbounded."""
    clock = Clock()
    hub = Hub(lambda: None, clock=clock)
    assert hub.limit() == MIN_BUFFERED, "an idle stream: room for a keyframe"
    for _ in range(60):  # 2 s of a 30 fps stream at 20 kB a frame: 4.8 Mbit/s, 300 kB per half second
        clock.now += 1 / 30
        hub.publish(EncodedChunk(0, 0, False, 0, bytes(20_000)))
    assert hub.limit() == MIN_BUFFERED
    for _ in range(60):  # 2 s at 300 kB a frame: 72 Mbit/s, 4.5 MB per half second
        clock.now += 1 / 30
        hub.publish(EncodedChunk(0, 0, False, 0, bytes(300_000)))
    assert hub.limit() == MAX_BUFFERED
    for _ in range(60):  # 2 s at 100 kB a frame: 1.5 MB per half second
        clock.now += 1 / 30
        hub.publish(EncodedChunk(0, 0, False, 0, bytes(100_000)))
    assert abs(hub.limit() - 1_500_000) <= 75_000, "one frame either way at the edge of the window"


def a_viewer_behind() -> tuple[Hub, Sink, list[int]]:
    """A hub whose one viewer got a keyframe, then fell behind; the keyframe requests made since."""
    requests: list[int] = []
    hub = Hub(lambda: requests.append(1))
    slow = Sink("slow")
    hub.add(slow)
    hub.publish(chunk(0, key=True))
    slow.buffered_amount = hub.limit() + 1
    hub.publish(chunk(1))  # behind: from now on the screen is still, no more frames
    requests.clear()
    return hub, slow, requests


def test_a_viewer_that_drains_while_the_screen_is_still_asks_for_its_keyframe() -> None:
    """Nothing is published while nothing changes on screen: the drain itself must get the viewer going again."""
    hub, slow, requests = a_viewer_behind()
    ((threshold, drained),) = slow.drained
    assert threshold == hub.limit() // 4
    slow.buffered_amount = 0
    drained()
    assert requests == [1], "the drain asks for a keyframe, which wakes the encoder"
    hub.publish(chunk(2, key=True))
    assert slow.frames == [0, 2]


def test_a_viewer_removed_while_behind_asks_for_nothing_when_its_channel_drains() -> None:
    hub, slow, requests = a_viewer_behind()
    hub.remove("slow")
    ((_, drained),) = slow.drained
    drained()
    assert requests == []
