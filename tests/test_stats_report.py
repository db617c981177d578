"""``impromptu status``'s text and ``/metrics`` (impromptu/stats/report.py), and who may read ``/metrics``."""

from __future__ import annotations

import aiohttp
import pytest

from impromptu.link import LinkKeys
from impromptu.signaling import SignalingServer
from impromptu.stats.report import format_status, prometheus

SNAPSHOT = {
    "desktop": {"surfaces": {"0": {"capture_ms": 1.25, "encode_ms": 9.5, "fps_encoded": 30, "target_fps": 30}}},
    "viewers": [
        {
            "peer": "p1",
            "role": "control",
            "desktop_side": {"bytes_sent": 250000, "buffered": 0, "sctp": {"cwnd": 12000, "srtt_ms": 2.5}},
            "page_side": {"pair": {"rtt_ms": 301.0, "local": {"address": "127.0.0.1"}}, "pipeline": {"kbps": 2000}},
            "verdict": "network",
            "reasons": ["round trip 301 ms (≥ 250 ms)"],
        },
        {"peer": "me", "role": "view", "desktop_side": None, "page_side": "garbage", "verdict": 5},
    ],
}


def test_status_text_shows_each_surface_and_viewer_and_tolerates_missing_figures() -> None:
    text = format_status(SNAPSHOT, own_peer="me")
    assert "1.2" in text and "9.5" in text  # capture and encode ms of surface 0
    row = next(line for line in text.splitlines() if line.startswith("p1"))
    assert "301" in row and "2000" in row and "the network path" in row
    assert "- round trip 301 ms" in text
    mine = next(line for line in text.splitlines() if line.startswith("me"))
    assert "(this status)" in mine and " - " in mine


def test_prometheus_text_has_every_number_with_labels() -> None:
    text = prometheus(SNAPSHOT)
    lines = text.splitlines()
    assert 'impromptu_surface_encode_ms{surface="0"} 9.5' in lines
    assert 'impromptu_viewer_desktop_sctp_cwnd{peer="p1",role="control"} 12000' in lines
    assert 'impromptu_viewer_page_pair_rtt_ms{peer="p1",role="control"} 301' in lines
    assert 'impromptu_viewer_verdict{peer="p1",role="control",verdict="network"} 1' in lines
    assert "# TYPE impromptu_surface_encode_ms gauge" in lines
    assert not any("address" in line for line in lines), "strings are not figures"
    assert text.endswith("\n")


@pytest.mark.parametrize(("peer", "label"), [('a"b', 'a\\"b'), ("a\\b", "a\\\\b"), ("a\nb", "a\\nb")])
def test_prometheus_label_values_are_escaped(peer: str, label: str) -> None:
    lines = prometheus({"viewers": [{"peer": peer, "role": "view", "desktop_side": {"buffered": 1}}]}).splitlines()
    assert lines[1] == f'impromptu_viewer_desktop_buffered{{peer="{label}",role="view"}} 1'


async def test_metrics_need_the_token() -> None:
    server = SignalingServer("127.0.0.1", 0)
    await server.start()
    token = LinkKeys.generate().metrics_token()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                assert response.status == 404  # nothing served yet
            server.serve_metrics(lambda: prometheus(SNAPSHOT), token)
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {token}x"}):
                async with http.get(url, headers=headers) as response:
                    assert response.status == 401
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                assert "impromptu_surface_encode_ms" in await response.text()
            async with http.get(url, params={"token": token}) as response:
                assert response.status == 200
    finally:
        await server.stop()
