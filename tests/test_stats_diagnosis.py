"""The rules of docs/diagnosis.md on synthetic figures: each verdict, the rules' order, and two seconds in a row."""

from __future__ import annotations

from typing import Any

import pytest

from impromptu.stats import diagnosis as d
from impromptu.stats.diagnosis import Diagnosis, diagnose, findings


def surface(**changes: Any) -> dict[str, Any]:
    return {
        "0": {
            "capture_ms": 2.0,
            "encode_ms": 9.0,
            "fps_encoded": 30,
            "frames_unchanged": 0,
            "target_fps": 30,
            **changes,
        }
    }


def desktop(rtt: float | None = 1.0, **sctp: Any) -> dict[str, Any]:
    return {
        "bytes_sent": 250_000,
        "buffered": 0,
        "frames_sent": 30,
        "frames_dropped": 0,
        "ice": {"rtt_ms": rtt},
        "sctp": {"cwnd": 50_000, "srtt_ms": 1.0, "chunks_sent": 400, "retransmits": 0, "abandoned": 0, **sctp},
    }


def page(rtt: float | None = 1.0, **pipeline: Any) -> dict[str, Any]:
    return {
        "pair": {"rtt_ms": rtt},
        "pipeline": {"fps_received": 30, "fps_decoded": 30, "fps_dropped": 0, "decode_ms": 4.0, "queue": 0, **pipeline},
    }


def twice(*figures: Any) -> Diagnosis:
    return diagnose(*figures, diagnose(*figures))


def test_clean_figures_are_healthy_with_a_summary() -> None:
    result = twice(surface(), desktop(), page())
    assert result.verdict == "healthy"
    assert result.reasons == ("round trip 1 ms, capture + encode 11 ms, decode 4 ms",)


def test_no_page_figures_yet_is_judged_on_the_desktop_side_alone() -> None:
    assert twice(surface(), desktop(rtt=None), None).verdict == "healthy"
    assert twice(surface(), desktop(rtt=300), None).verdict == "network", "the desktop's own round trip counts"


@pytest.mark.parametrize(
    ("figures", "reason"),
    [
        (surface(encode_ms=40.0), "capture + encode take 42 ms per frame, over the 33 ms frame interval"),
        (surface(fps_encoded=15, frames_unchanged=1), "encodes 15 fps of its 30 while the screen keeps changing"),
    ],
)
def test_the_desktop_machine(figures: dict[str, Any], reason: str) -> None:
    result = twice(figures, desktop(), page())
    assert result.verdict == "desktop" and result.reasons == (f"surface 0: {reason}",)


def test_few_frames_on_a_screen_that_changes_little_are_not_the_desktops_fault() -> None:
    assert twice(surface(fps_encoded=5, frames_unchanged=25), desktop(), page()).verdict == "healthy"
    assert (
        twice(surface(fps_encoded=0, frames_unchanged=30, capture_ms=None, encode_ms=None), desktop(), page()).verdict
        == "healthy"
    )


@pytest.mark.parametrize(
    ("desktop_side", "page_side", "reason"),
    [
        (desktop(), page(rtt=301), "round trip 301 ms (≥ 250 ms)"),
        (desktop(retransmits=4, abandoned=6), page(), "2.5 % of packets lost (10 of 400 SCTP chunks in 1 s)"),
        ({**desktop(), "frames_dropped": 12}, page(), "the path cannot carry the stream: 12 frames/s skipped"),
    ],
)
def test_the_network_path(desktop_side: dict[str, Any], page_side: dict[str, Any], reason: str) -> None:
    result = twice(surface(), desktop_side, page_side)
    assert result.verdict == "network" and result.reasons[0].startswith(reason)


def test_the_pages_round_trip_is_preferred_to_the_desktops_older_one() -> None:
    assert twice(surface(), desktop(rtt=400), page(rtt=20)).verdict == "healthy"


def test_little_traffic_says_nothing_about_loss() -> None:
    assert twice(surface(), desktop(chunks_sent=10, retransmits=1), page()).verdict == "healthy"


@pytest.mark.parametrize(
    ("pipeline", "reason"),
    [
        ({"decode_ms": 50.0}, "decoding takes 50 ms per frame, over the 33 ms frame interval"),
        ({"queue": 7}, "7 frames wait in the decoder (more than 3)"),
        ({"fps_decoded": 20}, "decoded 20 of the 30 frames it received whole in 1 s"),
    ],
)
def test_this_viewers_machine(pipeline: dict[str, Any], reason: str) -> None:
    result = twice(surface(), desktop(), page(**pipeline))
    assert result.verdict == "viewer" and result.reasons == (reason,)


def test_a_frame_decoded_a_second_late_is_not_a_drop() -> None:
    assert twice(surface(), desktop(), page(fps_decoded=29)).verdict == "healthy"


def test_a_lossy_network_with_slow_decoding_is_the_network() -> None:
    """Loss makes the page throw frames away until the next keyframe: the network rule comes first."""
    result = twice(surface(), desktop(retransmits=0, abandoned=40), page(decode_ms=50.0, fps_decoded=10))
    assert result.verdict == "network"


def test_a_slow_desktop_on_a_bad_network_is_the_desktop() -> None:
    assert twice(surface(encode_ms=60.0), desktop(), page(rtt=400)).verdict == "desktop"


def test_frame_interval_is_that_of_the_fastest_surface() -> None:
    surfaces = {**surface(), "1": {**surface()["0"], "target_fps": 10}}
    assert findings(surfaces, desktop(), page(decode_ms=40.0))[0] == "viewer"


def test_a_verdict_needs_two_seconds_in_a_row() -> None:
    clean = (surface(), desktop(), page())
    slow = (surface(), desktop(), page(decode_ms=50.0))
    first = diagnose(*clean)
    assert first.verdict is None and first.reasons == (), "no verdict after one second"
    healthy = diagnose(*clean, first)
    assert healthy.verdict == "healthy" and healthy.streak == d.HOLD_S

    one_slow = diagnose(*slow, healthy)
    assert (one_slow.verdict, one_slow.finding) == ("healthy", "viewer"), "a single slow second is no diagnosis"
    assert one_slow.reasons == healthy.reasons
    back = diagnose(*clean, one_slow)
    assert back.verdict == "healthy"
    flicker = diagnose(*slow, back)
    assert flicker.verdict == "healthy", "the streak starts over after a clean second"
    viewer = diagnose(*slow, flicker)
    assert viewer.verdict == "viewer" and viewer.reasons == (
        "decoding takes 50 ms per frame, over the 33 ms frame interval",
    )

    still_viewer = diagnose(*clean, viewer)
    assert still_viewer.verdict == "viewer", "recovering takes two seconds too"
    assert diagnose(*clean, still_viewer).verdict == "healthy"


def test_garbage_figures_are_not_numbers() -> None:
    weird = {"0": {"capture_ms": "x", "encode_ms": True, "fps_encoded": float("nan"), "target_fps": 0}}
    assert twice(weird, {"sctp": "no"}, {"pipeline": [1]}).verdict == "healthy"
