"""The desktop's figures from their sources: a surface's meter (medians, frames, unchanged intervals), per-second
rates, the encode worker's test hook (``IMPROMPTU_TEST_ENCODE_DELAY_MS``), and a page's ``stats`` checked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from impromptu.encode import Encoder
from impromptu.encode.worker import TEST_ENCODE_DELAY_ENV, EncodeWorker
from impromptu.stats.collector import SurfaceMeter, ViewerMeter
from impromptu.stats.page import parse_stats
from impromptu.stream.framing import EncodedChunk
from tests.test_worker import MovingPicture


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_surface_meter_takes_medians_over_the_last_second_and_counts_waits() -> None:
    clock = Clock()
    meter = SurfaceMeter(30, clock)
    assert meter.figures() == {
        "capture_ms": None,
        "encode_ms": None,
        "fps_encoded": 0,
        "frames_unchanged": 0.0,
        "target_fps": 30,
    }
    meter.frame(50.0, 50.0)  # more than a second old by the time it is read
    clock.now += 1.5
    for capture, encode in ((1.0, 10.0), (3.0, 30.0), (2.0, 20.0)):
        meter.frame(capture, encode)
    meter.idle_from(clock.now)
    clock.now += 0.5  # a wait under way counts
    figures = meter.figures()
    assert (figures["capture_ms"], figures["encode_ms"], figures["fps_encoded"]) == (2.0, 20.0, 3)
    assert figures["frames_unchanged"] == 15.0
    meter.idle_until(clock.now)
    clock.now += 0.75
    assert meter.figures()["frames_unchanged"] == 7.5, "only the part of the wait within the last second"


def test_viewer_meter_turns_totals_into_rates() -> None:
    clock = Clock()
    meter = ViewerMeter(clock)
    assert meter.rates({"bytes": 1000}) == {"bytes": None}
    clock.now += 2
    assert meter.rates({"bytes": 5000}) == {"bytes": 2000.0}
    clock.now += 1
    assert meter.rates({"bytes": 5000, "new": 3}) == {"bytes": 0.0, "new": None}


async def test_the_encode_delay_hook_slows_every_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    async def encode_ms() -> float:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[EncodedChunk] = asyncio.Queue()
        worker = EncodeWorker(MovingPicture(), Encoder(64, 48, 30), 0, chunks.put_nowait, print, loop)
        worker.start()
        worker.set_active(True)
        try:
            for _ in range(5):
                await asyncio.wait_for(chunks.get(), 5)
            figures = worker.meter.figures()
        finally:
            await asyncio.to_thread(worker.stop)
        assert figures["fps_encoded"] >= 1 and figures["capture_ms"] is not None
        return float(figures["encode_ms"])

    assert await encode_ms() < 40
    monkeypatch.setenv(TEST_ENCODE_DELAY_ENV, "60")  # read by workers made from now on
    assert await encode_ms() >= 60


GOOD: dict[str, Any] = {
    "type": "stats",
    "pair": {"state": "succeeded", "local": {"type": "host", "protocol": "udp", "address": "::1", "port": 9}},
    "pipeline": {"fps_received": 30, "decode_ms": 2.5, "queue": None},
}


def test_page_stats_keep_only_known_fields_and_take_missing_figures_as_null() -> None:
    parsed = parse_stats({**GOOD, "pair": {**GOOD["pair"], "secret": "x"}})
    assert parsed["pair"]["local"] == {"type": "host", "protocol": "udp", "address": "::1", "port": 9}
    assert parsed["pair"]["remote"] is None and parsed["pair"]["rtt_ms"] is None and "secret" not in parsed["pair"]
    assert parsed["pipeline"]["decode_ms"] == 2.5 and parsed["pipeline"]["kbps"] is None
    assert "downstream" not in parsed
    assert parse_stats({"type": "stats", "pair": None, "pipeline": None}) == {"pair": None, "pipeline": None}


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "stats", "pipeline": {}},
        {**GOOD, "pipeline": {"decode_ms": "2"}},
        {**GOOD, "pipeline": {"queue": True}},
        {**GOOD, "pipeline": {"kbps": 1e16}},
        {**GOOD, "pipeline": []},
        {**GOOD, "pair": {"local": {"port": 70000}}},
        {**GOOD, "pair": {"local": {"port": 1.5}}},
        {**GOOD, "pair": {"state": 5}},
        {**GOOD, "downstream": {}},
        {**GOOD, "downstream": [{"pair": None}]},
        {**GOOD, "downstream": [{"peer": "v", "page": {"pipeline": {"fps_decoded": -1}}}]},
        {**GOOD, "downstream": [{"peer": "v"}] * 65},
    ],
)
def test_malformed_page_stats_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        parse_stats(bad)


def test_a_relays_downstream_keeps_its_viewers_page_but_not_theirs() -> None:
    entry = {"peer": "v", "pair": None, "frames_skipped": 2, "page": {**GOOD, "downstream": [{"peer": "w"}]}}
    (down,) = parse_stats({**GOOD, "downstream": [entry]})["downstream"]
    assert down["frames_skipped"] == 2 and down["bytes"] is None
    assert down["page"]["pipeline"]["decode_ms"] == 2.5 and "downstream" not in down["page"]
