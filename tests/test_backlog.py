"""One viewer's standing in a fanned-out stream (§6), as the hub and a relay's forwarder both use it: per surface it
starts at a keyframe, falls behind on all surfaces at once, and resumes each at its own keyframe with its own count."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from impromptu.stream.backlog import MIN_BUFFERED, Backlog

LIMIT = MIN_BUFFERED


class Sink:
    def __init__(self) -> None:
        self.id = "v"
        self.buffered_amount = 0
        self.drained: list[tuple[int, Callable[[], None]]] = []

    def send_video(self, message: bytes) -> None:
        raise AssertionError("a Backlog decides; it never sends")

    def notify_drained(self, threshold: int, callback: Callable[[], None]) -> None:
        self.drained.append((threshold, callback))


def test_behind_on_one_surface_is_behind_on_all_and_each_resumes_at_its_own_keyframe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink()
    caught_up: list[Backlog] = []
    viewer = Backlog(sink, caught_up.append, logging.getLogger("owner"))
    assert not viewer.admit(0, False, LIMIT), "a viewer starts at a keyframe"
    assert viewer.admit(0, True, LIMIT) and viewer.admit(1, True, LIMIT)
    assert viewer.take_skipped(0) == 0

    sink.buffered_amount = LIMIT + 1
    with caplog.at_level(logging.INFO, "owner"):
        assert not viewer.admit(0, False, LIMIT)
        assert not viewer.admit(1, True, LIMIT), "behind: not even a keyframe"
        assert not viewer.admit(0, False, LIMIT)
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("owner", "viewer v is behind: skipping frames until it catches up")
    ], "logged once, on the owner's logger"
    ((threshold, drained),) = sink.drained
    assert threshold == LIMIT // 4

    sink.buffered_amount = LIMIT // 4
    drained()
    assert caught_up == [viewer], "the drain asks for the keyframe"
    assert viewer.started == set()
    assert not viewer.admit(1, False, LIMIT), "resumes at a keyframe, not before"
    asked = len(caught_up)
    assert viewer.admit(0, True, LIMIT) and viewer.take_skipped(0) == 2
    assert not viewer.admit(1, False, LIMIT)
    assert viewer.admit(1, True, LIMIT) and viewer.take_skipped(1) == 3
    assert viewer.skipped_total == 5
    drained()
    assert len(caught_up) == asked, "no more asking once it is no longer behind, not even from a late drain"
