"""Connection statistics from a real session (docs/protocol.md §10), seen by Python viewers on loopback: the desktop's
own figures are real numbers, a page's ``stats`` is kept and a malformed one dropped, a ``diagnosis`` comes every
second, and ``stats.request`` shows a view-only viewer only its own row."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from impromptu.session import ShareSession
from impromptu.signaling import SignalingServer
from tests.pyviewer import PyViewer, sharing, viewer
from tests.xclient import XWindow

PAGE_STATS: dict[str, Any] = {
    "type": "stats",
    "pair": {
        "state": "succeeded",
        "local": {"type": "host", "protocol": "udp", "address": "127.0.0.1", "port": 50000},
        "remote": {"type": "host", "protocol": "udp", "address": "127.0.0.1", "port": 50001},
        "rtt_ms": 0.4,
        "available_out_kbps": None,
        "bytes_sent": 1000,
        "bytes_received": 2_000_000,
        "packets_sent": 10,
        "packets_received": 2000,
        "requests_sent": 4,
        "responses_received": 4,
    },
    "pipeline": {
        "fps_received": 30,
        "fps_decoded": 30,
        "fps_dropped": 0,
        "decode_ms": 3.5,
        "jitter_ms": 2,
        "queue": 0,
        "kbps": 1800,
        "keyframe_requests": 0,
    },
}


@pytest.fixture
async def shared(xvfb_display: str) -> AsyncIterator[tuple[ShareSession, SignalingServer]]:
    async with sharing(xvfb_display) as pair:
        yield pair


@pytest.fixture
def painter(xvfb_display: str) -> Iterator[XWindow]:
    window = XWindow(xvfb_display, 0, 0, 640, 480)
    yield window
    window.close()


@contextlib.asynccontextmanager
async def painting(window: XWindow) -> AsyncIterator[None]:
    """The screen keeps changing meanwhile (a new colour every 20 ms)."""

    async def paint() -> None:
        colour = 0
        while True:
            colour = (colour + 0x050301) & 0xFFFFFF
            await asyncio.to_thread(window.fill, colour)
            await asyncio.sleep(0.02)

    task = asyncio.ensure_future(paint())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def of_type(kind: str) -> Any:
    return lambda m: m.get("type") == kind


async def diagnoses(v: PyViewer, count: int) -> list[dict[str, Any]]:
    """The next ``count`` ``diagnosis`` messages (waits for them)."""
    seen = len([m for m in v.configs if m.get("type") == "diagnosis"])
    await v.wait_control(lambda m: len([m for m in v.configs if m.get("type") == "diagnosis"]) >= seen + count, 10)
    return [m for m in v.configs if m.get("type") == "diagnosis"][seen : seen + count]


async def test_desktop_figures_are_real_numbers_and_a_diagnosis_comes_every_second(
    shared: tuple[ShareSession, SignalingServer], painter: XWindow
) -> None:
    session, server = shared
    v = viewer(session, server, session.keys.control)
    try:
        await v.connect()
        await asyncio.wait_for(v.frames.get(), 10)
        async with painting(painter):
            (first,) = await diagnoses(v, 1)  # the first verdict, after two seconds
            loop = asyncio.get_running_loop()
            started = loop.time()
            *_, last = await diagnoses(v, 3)
            elapsed = loop.time() - started
            assert 2.0 <= elapsed <= 4.5, f"3 more diagnoses took {elapsed:.1f} s, not about one a second"
            snapshot = session.stats_snapshot()
        assert set(last) == {"type", "verdict", "reasons", "figures"}
        assert last["verdict"] in ("healthy", "network", "viewer", "desktop")
        assert isinstance(last["reasons"], list) and all(isinstance(r, str) for r in last["reasons"])
        figures = last["figures"]
        assert figures["bytes_sent"] > 10_000, "the screen kept changing: bytes went out every second"
        assert figures["bytes_sent_total"] > first["figures"]["bytes_sent_total"], "bytes sent grow"
        assert figures["frames_sent"] > 5 and figures["frames_dropped"] == 0
        assert isinstance(figures["buffered"], int) and figures["buffered"] >= 0
        ice = figures["ice"]
        assert ice["local"] == {"type": "host", "protocol": "udp", "address": "127.0.0.1", "port": ice["local"]["port"]}
        assert ice["remote"]["address"] == "127.0.0.1" and 0 < ice["remote"]["port"] < 65536
        assert ice["rtt_ms"] is not None and 0 < ice["rtt_ms"] < 100, "the nominating check's round trip"
        sctp = figures["sctp"]
        assert sctp["cwnd"] > 0 and sctp["flight_size"] >= 0 and sctp["rto_ms"] > 0
        assert sctp["srtt_ms"] is not None and sctp["srtt_ms"] >= 0
        assert sctp["chunks_sent"] > 10 and sctp["retransmits"] == 0 and sctp["abandoned"] == 0

        surface = snapshot["desktop"]["surfaces"]["0"]
        assert surface["target_fps"] == 30 and surface["state"] == "live"
        assert surface["fps_encoded"] >= 5
        assert surface["encode_ms"] > 0 and surface["capture_ms"] > 0
        assert surface["frames_unchanged"] < 30
        (row,) = snapshot["viewers"]
        assert row["peer"] == v.id and row["role"] == "control" and row["page_side"] is None
        assert row["desktop_side"]["ice"] == row["desktop_side"]["ice"] | {"local": ice["local"]}

        # A still screen: encoding stops and the frame intervals go by unchanged.
        await asyncio.sleep(1.5)
        still = session.stats_snapshot()["desktop"]["surfaces"]["0"]
        assert still["fps_encoded"] == 0 and still["encode_ms"] is None and still["frames_unchanged"] > 20
    finally:
        await v.close()


async def test_page_stats_are_kept_and_malformed_ones_dropped_with_one_log_line(
    shared: tuple[ShareSession, SignalingServer], caplog: pytest.LogCaptureFixture
) -> None:
    session, server = shared
    v = viewer(session, server, session.keys.control)
    try:
        await v.connect()
        v.send({**PAGE_STATS, "extra": "ignored"})
        v.send({"type": "stats.request"})
        answer = await v.wait_control(of_type("stats.snapshot"))
        (row,) = answer["viewers"]
        assert row["page_side"]["pipeline"]["decode_ms"] == 3.5
        assert row["page_side"]["pair"]["local"]["port"] == 50000
        assert "extra" not in row["page_side"]

        caplog.set_level(logging.WARNING, logger="impromptu.stats.book")
        bad_pipeline = {**PAGE_STATS["pipeline"], "decode_ms": "slow"}
        for bad in (
            {**PAGE_STATS, "pipeline": bad_pipeline},
            {"type": "stats", "pair": None},
            {**PAGE_STATS, "pair": {**PAGE_STATS["pair"], "rtt_ms": -1}},
            {**PAGE_STATS, "downstream": [{"peer": "x"}] * 65},
            {**PAGE_STATS, "pair": {**PAGE_STATS["pair"], "state": "s" * 1000}},
        ):
            v.send(bad)
        # A relay's downstream, with its viewer's page part, is kept.
        relay = {
            **PAGE_STATS,
            "pipeline": {**PAGE_STATS["pipeline"], "decode_ms": 7.0},
            "downstream": [{"peer": "v2", "pair": PAGE_STATS["pair"], "frames_forwarded": 30, "page": PAGE_STATS}],
        }
        v.send(relay)
        await asyncio.sleep(0.3)  # the request rate limit
        v.configs.clear()
        v.send({"type": "stats.request"})
        answer = await v.wait_control(of_type("stats.snapshot"))
        page = answer["viewers"][0]["page_side"]
        assert page["pipeline"]["decode_ms"] == 7.0, "the malformed ones were dropped, the good one after kept"
        (down,) = page["downstream"]
        assert down["peer"] == "v2" and down["frames_forwarded"] == 30
        assert down["page"]["pipeline"]["decode_ms"] == 3.5
        lines = [r for r in caplog.records if "malformed stats" in r.getMessage()]
        assert len(lines) == 1 and v.id in lines[0].getMessage()
    finally:
        await v.close()


async def test_stats_request_shows_a_view_only_viewer_only_its_own_row(
    shared: tuple[ShareSession, SignalingServer],
) -> None:
    session, server = shared
    operator = viewer(session, server, session.keys.control)
    guest = viewer(session, server, session.keys.view)
    try:
        await operator.connect()
        await guest.connect()
        await diagnoses(guest, 1)  # a tick has gone by for both
        guest.send({"type": "stats.request"})
        operator.send({"type": "stats.request"})
        seen = await guest.wait_control(of_type("stats.snapshot"))
        whole = await operator.wait_control(of_type("stats.snapshot"))
        assert [row["peer"] for row in seen["viewers"]] == [guest.id]
        assert seen["viewers"][0]["role"] == "view"
        assert sorted(row["peer"] for row in whole["viewers"]) == sorted([operator.id, guest.id])
        assert "0" in whole["desktop"]["surfaces"]
        snapshot = session.stats_snapshot()
        assert set(snapshot) == {"desktop", "viewers"} and len(snapshot["viewers"]) == 2
        for row in snapshot["viewers"]:
            assert set(row) == {"peer", "role", "desktop_side", "page_side", "verdict", "reasons"}
    finally:
        await operator.close()
        await guest.close()


async def test_loss_on_the_way_is_counted_and_judged_the_network(
    shared: tuple[ShareSession, SignalingServer], painter: XWindow
) -> None:
    """The viewer's end throws away one datagram in eight (after the handshake): the desktop's SCTP association
    sees chunks lost — abandoned on the video channel, which never retransmits — and the verdict is the network."""
    session, server = shared
    v = viewer(session, server, session.keys.control)
    try:
        await v.connect()
        await asyncio.wait_for(v.frames.get(), 10)
        connection: Any = v.pc.sctp.transport.transport._connection  # type: ignore[union-attr]
        deliver = connection.data_received
        count = 0

        def lossy(data: bytes, component: int) -> None:
            nonlocal count
            count += 1
            if count % 8:
                deliver(data, component)

        connection.data_received = lossy
        async with painting(painter):
            await v.wait_control(lambda m: m.get("type") == "diagnosis" and m["verdict"] == "network", 15)
        last = [m for m in v.configs if m.get("type") == "diagnosis"][-1]
        assert any("packets lost" in reason for reason in last["reasons"]), last
        row = session.stats_snapshot()["viewers"][0]
        assert row["verdict"] == "network"
    finally:
        await v.close()
