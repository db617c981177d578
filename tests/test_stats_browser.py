"""Connection statistics in real Chromium (docs/protocol.md §10): the operator page's Stats panel with the nominated
candidate pair and the pipeline's figures, its charts, the `stats` it sends the desktop each second, the slow-decoder
test hook, and the relay page's statistics of its upstream and of each viewer (with the stats that viewer sent)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import CHROMIUM, Desktop, desktop_args, run_desktop, wait_for

pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)")

# The screen changes every 20 ms: frames keep coming.
BUSY = ["xterm", "-e", "sh", "-c", "while :; do date +%s.%N; sleep 0.02; done"]

# Every `stats` message the page sends on a DataChannel, kept for the test to read.
RECORD_STATS = """(() => {
    const send = RTCDataChannel.prototype.send;
    window.__stats = [];
    RTCDataChannel.prototype.send = function (data) {
        if (typeof data === 'string' && data.startsWith('{"type":"stats"')) {
            window.__stats.push(JSON.parse(data));
            if (window.__stats.length > 20) window.__stats.shift();
        }
        return send.call(this, data);
    };
})();"""

# Pixels of each chart's own line colour (stats-panel.js COLORS), not its frame or scale.
LINE_PIXELS = """(selector) => {
    const colours = {
        rtt_ms: [224, 160, 64], kbps: [106, 160, 216], fps_decoded: [102, 204, 102], decode_ms: [221, 119, 119],
    };
    const out = {};
    for (const c of document.querySelectorAll(selector)) {
        const [r0, g0, b0] = colours[c.dataset.figure];
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (Math.abs(d[i] - r0) + Math.abs(d[i + 1] - g0) + Math.abs(d[i + 2] - b0) < 60) n++;
        }
        out[c.dataset.figure] = n;
    }
    return out;
}"""

VERDICT_WORDS = {"Healthy", "Network path", "This viewer’s machine", "The desktop machine", "waiting for the desktop"}
RELAYED_WORDS = "waiting for the desktop, through the relay"


@pytest.fixture
def desktop() -> Iterator[Desktop]:
    with run_desktop("vdisplay", "run", *desktop_args("--size", "640x480"), "--", *BUSY) as d:
        yield d


def open_in(context: Any, url: str) -> Any:
    """``open_operator`` in a context of the test's own (one that records what its pages send)."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function("() => window.impromptu && window.impromptu.framesDecoded > 0", timeout=20_000)
    page.errors = errors
    return page


def open_recording(browser: Any, url: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.add_init_script(RECORD_STATS)
    return open_in(context, url)


def test_the_stats_panel_shows_the_pair_the_pipeline_and_charts(browser: Any, desktop: Desktop) -> None:
    page = open_recording(browser, desktop.url)
    page.wait_for_function("() => window.impromptu.stats.pair && window.impromptu.stats.pipeline", timeout=10_000)
    first = page.evaluate("() => window.impromptu.stats")
    pair = first["pair"]
    assert pair["state"] == "succeeded"
    assert pair["local"]["address"] == "127.0.0.1" and pair["remote"]["address"] == "127.0.0.1"
    # Chromium gathers no loopback candidate of its own: it learns its 127.0.0.1 one from the desktop's checks.
    assert pair["local"]["type"] in ("host", "prflx") and pair["remote"]["type"] == "host"
    assert pair["local"]["protocol"] == "udp"
    assert isinstance(pair["local"]["port"], int) and isinstance(pair["remote"]["port"], int)
    assert pair["requests_sent"] >= 1 and pair["responses_received"] >= 1
    page.wait_for_timeout(2_200)
    second = page.evaluate("() => window.impromptu.stats")
    for key in ("bytes_received", "bytes_sent", "packets_received", "packets_sent"):
        assert second["pair"][key] > first["pair"][key], key
    assert isinstance(second["pair"]["rtt_ms"], (int, float)) and 0 <= second["pair"]["rtt_ms"] < 100
    pipeline = second["pipeline"]
    assert pipeline["fps_received"] > 5 and pipeline["fps_decoded"] > 5, pipeline
    assert pipeline["kbps"] > 0 and isinstance(pipeline["decode_ms"], (int, float)), pipeline
    assert isinstance(pipeline["jitter_ms"], (int, float)) and isinstance(pipeline["queue"], int), pipeline
    assert len(second["history"]["kbps"]) > len(first["history"]["kbps"])
    assert second["verdictText"] in VERDICT_WORDS

    # What went to the desktop: §10's shape, numbers or null.
    sent = page.evaluate("() => window.__stats.at(-1)")
    assert set(sent) == {"type", "pair", "pipeline"}
    assert set(sent["pipeline"]) == set(pipeline)
    assert all(v is None or isinstance(v, (int, float)) for v in sent["pipeline"].values())
    assert sent["pair"]["bytes_received"] > 0 and sent["pair"]["local"]["address"] == "127.0.0.1"

    # The panel: closed, it takes no keys; opened by its button, it shows the figures and draws its charts.
    assert page.locator("#stats").is_hidden()
    page.locator("#screen").focus()
    page.locator("#stats-btn").click()
    assert page.locator("#stats").is_visible()
    assert page.evaluate("() => document.activeElement.id") == "stats"
    page.wait_for_timeout(2_200)
    text = page.locator("#stats").inner_text()
    assert "127.0.0.1" in text and "Round trip" in text and "Decode time" in text
    assert any(word in text for word in VERDICT_WORDS), text
    drawn = page.evaluate(LINE_PIXELS, "#stats canvas.spark")
    assert drawn["kbps"] > 5 and drawn["fps_decoded"] > 5 and drawn["rtt_ms"] > 5, drawn
    if shots := os.environ.get("IMPROMPTU_SCREENSHOTS"):
        page.screenshot(path=str(Path(shots) / "stats-panel.png"))
    page.keyboard.press("Escape")
    assert page.locator("#stats").is_hidden()
    assert page.evaluate("() => document.activeElement.id") == "screen", "the keyboard goes back to the desktop"
    assert not page.errors
    page.context.close()


def test_a_slow_decoder_shows_in_the_figures(browser: Any, desktop: Desktop) -> None:
    page = open_recording(browser, desktop.url)
    page.wait_for_function("() => window.impromptu.stats.pipeline?.fps_decoded > 5", timeout=10_000)
    page.evaluate("() => window.impromptu.slowDecode(150)")

    def slow() -> Any:
        p = page.evaluate("() => window.impromptu.stats.pipeline")
        behind = p["queue"] > 3 or p["fps_dropped"] > 0
        return p if p["decode_ms"] is not None and p["decode_ms"] > 100 and behind else None

    p = wait_for(slow, 10, "decode time and queue to grow")
    assert p["fps_decoded"] <= 8, p
    sent = page.evaluate("() => window.__stats.at(-1).pipeline")
    assert sent["decode_ms"] > 100
    page.evaluate("() => window.impromptu.slowDecode(0)")
    recovered = "() => (window.impromptu.stats.pipeline.decode_ms ?? 1e9) < 50"
    wait_for(lambda: page.evaluate(recovered), 10, "decoding to recover")
    page.context.close()


def relay_page_url(link: str, capacity: int) -> str:
    base, _, fragment = link.partition("#")
    return f"{base.rstrip('/')}/relay?max={capacity}#{fragment}"


def test_the_relay_page_shows_its_upstream_and_each_viewer(browser: Any) -> None:
    args = desktop_args("--size", "640x480", "--max-direct", "1")
    with run_desktop("vdisplay", "run", *args, "--", *BUSY) as desktop:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_init_script(RECORD_STATS)
        relay = context.new_page()
        errors: list[str] = []
        relay.on("pageerror", lambda exc: errors.append(str(exc)))
        relay.goto(relay_page_url(desktop.url, 2))
        relay.wait_for_function(
            "() => window.impromptuRelay && window.impromptuRelay.upstream.state === 'connected'", timeout=20_000
        )
        viewer = open_in(context, desktop.view_url)
        assert viewer.evaluate("() => window.impromptu.viaRelay") is True
        # Behind a relay the verdict comes from the desktop through the relay (§10): the page says so meanwhile.
        viewer.wait_for_function("() => window.impromptu.stats.pipeline !== null", timeout=5_000)
        if viewer.evaluate("() => window.impromptu.stats.verdict") is None:
            assert viewer.evaluate("() => window.impromptu.stats.verdictText") == RELAYED_WORDS
        viewer.wait_for_function("() => window.impromptu.stats.verdict !== null", timeout=20_000)
        assert viewer.evaluate("() => window.impromptu.stats.verdict") in ("healthy", "network", "viewer", "desktop")

        def viewer_stats() -> Any:
            down = relay.evaluate("() => window.impromptuRelay.stats.downstream")
            return down if down and down[0]["page"] and down[0]["pair"] and down[0]["frames_forwarded"] else None

        down = wait_for(viewer_stats, 10, "the relay to have its viewer's stats")
        entry = down[0]
        assert entry["pair"]["state"] == "succeeded" and isinstance(entry["pair"]["rtt_ms"], (int, float))
        assert entry["page"]["pipeline"]["fps_decoded"] > 0, entry
        # Between two Chromiums the pair may be any of this machine's own addresses, not only loopback.
        assert entry["page"]["pair"]["state"] == "succeeded" and entry["page"]["pair"]["remote"]["address"]
        assert entry["frames_forwarded"] > 0 and entry["bytes"] > 0, entry
        up = relay.evaluate("() => window.impromptuRelay.stats.upstream")
        assert up["pair"]["state"] == "succeeded" and up["pipeline"]["fps_decoded"] > 0, up

        # The relay passes it up: its own stats, with a downstream entry carrying the viewer's page.
        def sent_up() -> Any:
            sent = relay.evaluate("() => window.__stats.filter(s => s.downstream).at(-1) ?? null")
            return sent if sent and sent["downstream"] and sent["downstream"][0].get("page") else None

        sent = wait_for(sent_up, 10, "the relay to send its viewer's stats upstream")
        assert sent["downstream"][0]["peer"] == viewer.evaluate("() => window.impromptu.presence?.you")
        assert set(sent["downstream"][0]) == {"peer", "pair", "bytes", "frames_forwarded", "frames_skipped", "page"}

        # The panel: the upstream (with its verdict) and the viewer, each with its charts drawn.
        relay.wait_for_function(
            "() => window.impromptuRelay.stats.downstream[0].history.kbps.filter(v => v !== null).length >= 8",
            timeout=10_000,
        )
        relay.wait_for_timeout(1_100)  # drawn at the next second
        if shots := os.environ.get("IMPROMPTU_SCREENSHOTS"):
            relay.screenshot(path=str(Path(shots) / "relay-stats.png"), full_page=True)
        sections = relay.locator("#panel-stats section.conn-stats")
        assert sections.count() == 2
        assert any(word in sections.nth(0).inner_text() for word in VERDICT_WORDS)
        assert "Frames forwarded" in sections.nth(1).inner_text()
        drawn = relay.evaluate(LINE_PIXELS, "#panel-stats section:nth-child(2) canvas.spark")
        assert drawn["rtt_ms"] > 5 and drawn["kbps"] > 5, drawn
        assert not errors and not viewer.errors
        context.close()
