"""A relay's forwarding, without a network: every upstream message reaches each viewer unchanged, from a keyframe
on; a backed-up viewer skips whole frames alone; keyframe requests upstream are rate-limited but never lost."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from impromptu.relay.forward import KEYFRAME_INTERVAL_S, Forwarder, KeyframeRequests
from impromptu.stream.framing import HEADER, EncodedChunk, Reassembler, fragment
from impromptu.stream.hub import MAX_BUFFERED, MIN_BUFFERED


class Sink:
    def __init__(self, name: str) -> None:
        self.id = name
        self.buffered_amount = 0
        self.messages: list[bytes] = []
        self.reassembler = Reassembler()
        self.frames: list[int] = []
        self.drained: list[tuple[int, Callable[[], None]]] = []

    def send_video(self, message: bytes) -> None:
        self.messages.append(message)
        done = self.reassembler.push(message)
        if done is not None:
            self.frames.append(done.chunk.seq)

    def notify_drained(self, threshold: int, callback: Callable[[], None]) -> None:
        self.drained.append((threshold, callback))


def frame(seq: int, key: bool = False, size: int = 40_000, surface: int = 0) -> list[bytes]:
    """One frame's wire messages (40 kB: three fragments)."""
    return fragment(EncodedChunk(surface, seq, key, 1_000 + seq, bytes([seq % 256]) * size))


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def forwarder() -> tuple[Forwarder, list[int], list[tuple[str, int, int]]]:
    requests: list[int] = []
    told: list[tuple[str, int, int]] = []
    fwd = Forwarder(requests.append, lambda viewer, surface, frames: told.append((viewer, surface, frames)))
    return fwd, requests, told


def push_all(fwd: Forwarder, messages: list[bytes]) -> None:
    for message in messages:
        fwd.push(message)


def test_messages_reach_every_viewer_unchanged_from_a_keyframe_on() -> None:
    fwd, _, _ = forwarder()
    early, late = Sink("early"), Sink("late")
    fwd.add(early)
    sent: list[bytes] = []
    for seq in range(6):
        messages = frame(seq, key=seq in (0, 4))
        sent += messages
        push_all(fwd, messages)
        if seq == 2:
            fwd.add(late)  # frames 1 and 2 are kept, neither a keyframe
    assert early.messages == sent, "byte for byte, in the order they came"
    assert early.frames == [0, 1, 2, 3, 4, 5]
    assert late.frames == [4, 5], "a viewer that joins mid-stream starts at the next keyframe"
    assert late.messages == sent[4 * 3 :]


def test_a_keyframe_that_began_before_the_viewer_was_ready_is_delivered_whole() -> None:
    fwd, _, _ = forwarder()
    key = frame(10, key=True)
    assert len(key) == 3
    push_all(fwd, frame(9))
    fwd.push(key[2])  # unordered channel: any order
    fwd.push(key[0])
    viewer = Sink("v")
    fwd.add(viewer)
    assert viewer.messages == [key[2], key[0]], "what has come of it so far, at once"
    fwd.push(key[1])
    push_all(fwd, frame(11))
    assert viewer.frames == [10, 11]


def test_the_frame_after_a_kept_keyframe_comes_too_even_when_its_fragments_overtook_the_keyframe() -> None:
    fwd, _, _ = forwarder()
    key, delta = frame(20, key=True), frame(21)
    fwd.push(key[0])
    fwd.push(delta[0])  # the next frame overtakes the end of the keyframe
    viewer = Sink("v")
    fwd.add(viewer)
    push_all(fwd, key[1:] + delta[1:])
    assert viewer.frames == [20, 21]


def test_only_the_last_two_frames_are_kept() -> None:
    fwd, _, _ = forwarder()
    push_all(fwd, frame(0, key=True) + frame(1) + frame(2))
    viewer = Sink("v")
    fwd.add(viewer)
    assert viewer.messages == [], "the keyframe is three frames old: waiting for the next"
    push_all(fwd, frame(3) + frame(4, key=True))
    assert viewer.frames == [4]


def test_a_backed_up_viewer_skips_whole_frames_alone_and_resumes_at_a_keyframe() -> None:
    fwd, requests, told = forwarder()
    fast, slow = Sink("fast"), Sink("slow")
    fwd.add(fast)
    fwd.add(slow)
    push_all(fwd, frame(0, key=True))
    first = frame(1)
    fwd.push(first[0])
    slow.buffered_amount = fwd.limit() + 1  # backs up in the middle of frame 1: it still gets all of frame 1
    push_all(fwd, first[1:])
    for seq in range(2, 20):
        push_all(fwd, frame(seq))
    assert requests == [], "no keyframe storm while a viewer is behind"
    assert len(slow.drained) == 1 and slow.drained[0][0] == fwd.limit() // 4
    slow.buffered_amount = fwd.limit() // 4 + 1
    push_all(fwd, frame(20))
    assert requests == [], "still draining"
    slow.buffered_amount = 0
    slow.drained[0][1]()  # bufferedamountlow: asks for the keyframe that gets it going (the screen may be still)
    assert requests == [0]
    push_all(fwd, frame(21))
    push_all(fwd, frame(22, key=True) + frame(23))
    assert fast.frames == list(range(24))
    assert slow.frames == [0, 1, 22, 23], "whole frames only: never a frame cut in the middle"
    assert told == [("slow", 0, 20)], "told how many frames it missed, once it resumes"
    assert fwd.skipped("slow") == 20 and fwd.skipped("fast") == 0


def test_the_limit_follows_the_stream_rate_within_its_bounds() -> None:
    clock = Clock()
    fwd = Forwarder(lambda surface: None, clock=clock)
    assert fwd.limit() == MIN_BUFFERED
    for seq in range(60):  # 60 × 40 kB in 2 s: 1.2 MB/s, so half a second is 600 kB, below the floor
        push_all(fwd, frame(seq, key=seq == 0))
        clock.now += 2 / 60
    assert fwd.limit() == MIN_BUFFERED
    for seq in range(60, 180):  # 3 MB/s: 1.5 MB
        push_all(fwd, frame(seq, size=50_000))
        clock.now += 2 / 120
    assert fwd.limit() == pytest.approx(1_500_000, rel=0.05)
    for seq in range(180, 300):  # 12 MB/s: capped
        push_all(fwd, frame(seq, size=200_000))
        clock.now += 2 / 120
    assert fwd.limit() == MAX_BUFFERED


def test_malformed_duplicate_and_stale_fragments_are_not_forwarded() -> None:
    fwd, _, _ = forwarder()
    viewer = Sink("v")
    fwd.add(viewer)
    key = frame(5, key=True)
    push_all(fwd, key)
    good = len(viewer.messages)
    version, flags, surface, seq, _, count, size, capture = HEADER.unpack_from(key[0])
    payload = key[0][HEADER.size :]
    bad = [
        b"\x01\x00",
        HEADER.pack(2, flags, surface, 6, 0, 1, 10, capture) + b"x" * 10,  # unknown version
        HEADER.pack(version, 0, surface, 6, 3, 3, 10, capture) + b"x" * 10,  # index ≥ count
        HEADER.pack(version, 0, surface, 6, 0, 0, 10, capture) + b"x" * 10,  # no fragments
        HEADER.pack(version, 0, surface, 6, 0, 1, 5, capture) + b"x" * 10,  # larger than its frame
        key[1],  # duplicate
        HEADER.pack(version, 0, surface, seq, 0, count + 1, size, capture) + payload,  # disagrees with its frame
    ]
    push_all(fwd, bad)
    push_all(fwd, frame(6) + frame(7) + frame(8))
    push_all(fwd, frame(4))  # older than the last two: nobody could use it
    assert viewer.messages[good:] == frame(6) + frame(7) + frame(8)
    assert fwd.dropped == len(bad) + 3
    assert viewer.reassembler.dropped_fragments == 0


def test_surfaces_are_gated_separately() -> None:
    fwd, _, _ = forwarder()
    viewer = Sink("v")
    fwd.add(viewer)
    push_all(fwd, frame(0, key=True, surface=0))
    push_all(fwd, frame(0, surface=1))
    push_all(fwd, frame(1, surface=0))
    assert [HEADER.unpack_from(m)[2] for m in viewer.messages] == [0] * 6, "surface 1 has not had a keyframe"
    push_all(fwd, frame(1, key=True, surface=1))
    assert [HEADER.unpack_from(m)[2] for m in viewer.messages[6:]] == [1] * 3


def test_a_new_upstream_starts_everyone_again_at_a_keyframe() -> None:
    fwd, _, _ = forwarder()
    viewer = Sink("v")
    fwd.add(viewer)
    push_all(fwd, frame(100, key=True) + frame(101))
    fwd.reset()
    viewer.reassembler = Reassembler()  # as the new upstream's config makes a viewer do
    push_all(fwd, frame(7))
    push_all(fwd, frame(8, key=True) + frame(9))
    assert viewer.frames == [100, 101, 8, 9]


def test_a_removed_viewer_gets_nothing_more() -> None:
    fwd, _, _ = forwarder()
    a, b = Sink("a"), Sink("b")
    fwd.add(a)
    fwd.add(b)
    key = frame(0, key=True)
    fwd.push(key[0])
    fwd.remove("a")
    push_all(fwd, key[1:] + frame(1))
    assert len(a.messages) == 1 and b.frames == [0, 1]
    assert len(fwd) == 1 and "a" not in fwd


class Timers:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pending: list[tuple[float, Callable[[], None], Handle]] = []

    def call_later(self, delay: float, fn: Callable[[], None]) -> Handle:
        handle = Handle()
        self.pending.append((self.clock.now + delay, fn, handle))
        return handle

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        due = [p for p in self.pending if p[0] <= self.clock.now]
        self.pending = [p for p in self.pending if p[0] > self.clock.now]
        for _, fn, handle in due:
            if not handle.cancelled:
                fn()


class Handle:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_keyframe_requests_are_rate_limited_but_a_late_one_is_sent_when_its_time_comes() -> None:
    clock = Clock()
    timers = Timers(clock)
    sent: list[int] = []
    requests = KeyframeRequests(sent.append, timers.call_later, clock)
    requests.request(0)
    assert sent == [0]
    timers.advance(0.1)
    requests.request(0)
    requests.request(0)
    requests.request(1)  # another surface has its own budget
    assert sent == [0, 1]
    timers.advance(0.1)
    assert sent == [0, 1]
    timers.advance(KEYFRAME_INTERVAL_S)
    assert sent == [0, 1, 0], "the requests within the interval became one, sent when it ended"
    timers.advance(0.1)
    requests.request(0)
    requests.keyframe_seen(0)  # a keyframe came meanwhile: it serves the request
    timers.advance(1.0)
    assert sent == [0, 1, 0]
    requests.request(0)
    assert sent == [0, 1, 0, 0]


def test_the_forwarder_reports_keyframes_to_the_requests() -> None:
    clock = Clock()
    timers = Timers(clock)
    sent: list[int] = []
    requests = KeyframeRequests(sent.append, timers.call_later, clock)
    fwd = Forwarder(requests.request, on_keyframe=requests.keyframe_seen, clock=clock)
    requests.request(0)
    requests.request(0)
    push_all(fwd, frame(0, key=True))
    timers.advance(1.0)
    assert sent == [0]


def test_a_new_config_on_the_same_upstream_starts_the_surface_again() -> None:
    """A desktop that restarted behind an upstream relay numbers its frames from anywhere: after the new config,
    frames with lower numbers are not "old", and viewers start again at the next keyframe."""
    fwd, _, _ = forwarder()
    viewer = Sink("v")
    fwd.add(viewer)
    for seq in range(1000, 1003):
        push_all(fwd, frame(seq, key=seq == 1000))
    fwd.reset_surface(0)
    push_all(fwd, frame(1))  # a delta frame of the new stream: the viewer cannot start on it
    push_all(fwd, frame(2, key=True))
    push_all(fwd, frame(3))
    forwarded = [HEADER.unpack_from(m)[3] for m in viewer.messages]  # (the viewer resets on the config)
    assert forwarded == [1000] * 3 + [1001] * 3 + [1002] * 3 + [2] * 3 + [3] * 3
