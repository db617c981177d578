import random

import pytest

from impromptu.stream.framing import (
    HEADER,
    HEADER_SIZE,
    MAX_MESSAGE,
    MAX_PENDING,
    SEQ_MOD,
    EncodedChunk,
    Reassembler,
    fragment,
    seq_newer,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chunk(seq: int, size: int = 50_000, key: bool = False) -> EncodedChunk:
    rng = random.Random(seq)
    return EncodedChunk(0, seq % SEQ_MOD, key, 1_700_000_000_000_000 + seq, rng.randbytes(size))


def deliver(r: Reassembler, messages: list[bytes]) -> list[EncodedChunk]:
    out = []
    for m in messages:
        done = r.push(m)
        if done is not None:
            out.append(done.chunk)
    return out


def test_fragments_fit_a_message_and_round_trip_in_any_order() -> None:
    c = chunk(7, 100_000, key=True)
    messages = fragment(c)
    assert all(len(m) <= MAX_MESSAGE for m in messages)
    assert len(messages) == 7
    random.Random(1).shuffle(messages)
    assert deliver(Reassembler(), messages) == [c]


def test_empty_frame_is_one_fragment() -> None:
    c = chunk(1, 0)
    assert deliver(Reassembler(), fragment(c)) == [c]


def test_losing_a_fragment_loses_the_frame_and_flags_the_next() -> None:
    r = Reassembler()
    first, second, third = chunk(1), chunk(2), chunk(3)
    assert deliver(r, fragment(first)) == [first]
    deliver(r, fragment(second)[1:])  # fragment 0 lost
    done = [r.push(m) for m in fragment(third)]
    got = [d for d in done if d is not None]
    assert [d.chunk for d in got] == [third]
    assert got[0].lost_before
    assert r.lost_frames == 1


def test_reordered_frames_never_go_backwards() -> None:
    r = Reassembler()
    a, b = chunk(10), chunk(11)
    assert deliver(r, fragment(b)) == [b]
    assert deliver(r, fragment(a)) == []  # older than what was delivered


def test_malformed_fragments_are_dropped() -> None:
    r = Reassembler()
    good = fragment(chunk(1, 100))[0]
    bad_version = bytes([2]) + good[1:]
    short = good[: HEADER_SIZE - 1]
    v, f, s, seq, _i, _c, size, ts = HEADER.unpack_from(good)
    bad_index = HEADER.pack(v, f, s, seq, 3, 2, size, ts) + b"x"
    oversize = HEADER.pack(v, f, s, seq + 5, 0, 1, 10, ts) + b"y" * 11
    for m in (bad_version, short, bad_index, oversize):
        assert r.push(m) is None
    assert r.dropped_fragments == 4
    assert r.push(good) is not None


def test_incomplete_frames_expire_after_a_second() -> None:
    clock = Clock()
    r = Reassembler(clock)
    deliver(r, fragment(chunk(1))[:1])
    clock.now = 1.5
    later = chunk(2)
    got = [d for d in (r.push(m) for m in fragment(later)) if d]
    assert got[0].chunk == later and got[0].lost_before


def test_pending_frames_are_bounded() -> None:
    r = Reassembler()
    for seq in range(1, 40):
        r.push(fragment(chunk(seq))[0])
    assert len(r._pending) <= MAX_PENDING


def test_sequence_wraps_around() -> None:
    assert seq_newer(0, SEQ_MOD - 1)
    assert not seq_newer(SEQ_MOD - 1, 0)
    r = Reassembler()
    a, b = chunk(SEQ_MOD - 1), chunk(SEQ_MOD)
    assert deliver(r, fragment(a) + fragment(b)) == [a, b]


@pytest.mark.parametrize("loss", [0.05, 0.2])
def test_random_loss_and_reordering_delivers_only_whole_frames_in_order(loss: float) -> None:
    rng = random.Random(42)
    frames = [chunk(s, rng.randrange(1, 60_000)) for s in range(200)]
    messages = [m for c in frames for m in fragment(c) if rng.random() > loss]
    # Local reordering, as an unordered channel produces.
    for i in range(0, len(messages) - 3, 3):
        if rng.random() < 0.5:
            messages[i], messages[i + 2] = messages[i + 2], messages[i]
    r = Reassembler()
    got = deliver(r, messages)
    by_seq = {c.seq: c for c in frames}
    assert got, "some frames must survive"
    assert all(by_seq[c.seq] == c for c in got)
    assert [c.seq for c in got] == sorted(c.seq for c in got)
