"""The diagnosis of a connection, in real headless Chromium (docs/diagnosis.md, protocol.md §10): a clean run is
"healthy", 150 ms each way and 5 % loss through a user-space impairment relay (tests/impair.py) is "network", a
slowed decoder in the page is "viewer", a slowed encoder in the desktop is "desktop"."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.harness import CHROMIUM, Desktop, desktop_args, moving_app, run_desktop
from tests.impair import SELECTED_PAIR_JS, TO_CLIENT, TO_TARGET, PageRouting

pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)")

# Modest, so that a 2-core machine running the desktop, its app and Chromium is not what the diagnosis finds.
WIDTH, HEIGHT = 640, 360
# How long a verdict may take: the figures of a changed connection settle over a few seconds, then a verdict
# needs two seconds in a row of the same finding.
VERDICT_TIMEOUT_MS = 30_000
FRAME_INTERVAL_MS = 1000 / 30
# The round-trip figure in a verdict's reasons.
RTT_FIGURE = r"(?:round[- ]?trip|rtt)\D{0,20}?(\d+(?:\.\d+)?)\s*ms"


@contextmanager
def moving_desktop(env: dict[str, str] | None = None) -> Iterator[Desktop]:
    args = desktop_args("--size", f"{WIDTH}x{HEIGHT}")
    with run_desktop("vdisplay", "run", *args, "--", *moving_app(WIDTH, HEIGHT), env=env) as desktop:
        yield desktop


@pytest.fixture
def desktop() -> Iterator[Desktop]:
    with moving_desktop() as d:
        yield d


def open_page(browser: Any, url: str, routing: PageRouting | None = None) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if routing is not None:
        routing.attach(page)
    page.goto(url)
    page.wait_for_function("() => window.impromptu && window.impromptu.framesDecoded > 0", timeout=20_000)
    page.errors = errors
    return page


# A verdict judged from figures: the page has its own (pair and pipeline), and the desktop's is not its placeholder
# for a connection's first seconds (verdict "healthy", reason "too early to tell").
JUDGED_JS = """(v) => {
  const s = window.impromptu.stats;
  return !!s && s.verdict === v && s.pair !== null && s.pipeline !== null
    && !s.reasons.some((r) => /too early/i.test(r));
}"""


def wait_for_verdict(page: Any, verdict: str, timeout_ms: float = VERDICT_TIMEOUT_MS) -> tuple[dict[str, Any], float]:
    """Waits until the page shows ``verdict``, judged from figures; returns the page's stats then and the seconds it
    took."""
    start = time.monotonic()
    try:
        page.wait_for_function(JUDGED_JS, arg=verdict, timeout=timeout_ms)
    except Exception as exc:
        stats = page.evaluate("() => window.impromptu.stats ?? null")
        raise AssertionError(f"no {verdict!r} verdict within {timeout_ms:.0f} ms; the page has: {stats}") from exc
    return page.evaluate("() => window.impromptu.stats"), time.monotonic() - start


def figures(reasons: list[str], pattern: str) -> list[float]:
    """The numbers in the reasons that match ``pattern`` (a regex around a number group)."""
    return [float(m.group(1)) for reason in reasons for m in re.finditer(pattern, reason, re.IGNORECASE)]


def test_a_clean_run_is_healthy(browser: Any, desktop: Desktop) -> None:
    page = open_page(browser, desktop.url)
    stats, took = wait_for_verdict(page, "healthy")
    print(f"healthy after {took:.1f} s: {stats['reasons']}, pair {stats['pair']}, pipeline {stats['pipeline']}")
    assert stats["pair"]["state"] == "succeeded"
    assert isinstance(stats["pair"]["rtt_ms"], int | float) and stats["pair"]["rtt_ms"] < 50
    # It stays healthy (sampled over a few more seconds), and says so with the figures: a short round trip.
    for _ in range(5):
        time.sleep(1)
        stats = page.evaluate("() => window.impromptu.stats")
        assert stats["verdict"] == "healthy", stats
    rtts = figures(stats["reasons"], RTT_FIGURE)
    assert rtts and all(r < 250 for r in rtts), stats["reasons"]
    assert not page.errors
    page.close()


def test_the_page_connection_goes_through_the_relay(browser: Any, desktop: Desktop) -> None:
    """The routing itself: the page's ICE checks, DTLS and SCTP all go through the relay, both ways."""
    with PageRouting(delay_ms=50) as routing:
        page = open_page(browser, desktop.url, routing)
        (relay,) = routing.relays
        pair = page.evaluate(SELECTED_PAIR_JS)
        assert pair["remote"]["port"] == relay.port and pair["remote"]["address"] == "127.0.0.1", pair
        assert pair["remote"]["type"] == "host", "the relay's address came in the offer, not as a peer-reflexive"
        # The page's packets reach the relay from its own socket (the one of the local candidate in use, or the
        # base of the peer-reflexive one it learnt from the desktop's answers, which show the relay's mapping).
        local = pair["local"]
        assert relay.client == ("127.0.0.1", local["related_port"] if local["type"] == "prflx" else local["port"])
        # Video flows through it: far more from the desktop than the handshakes' few datagrams.
        passed = relay.passed(TO_CLIENT)
        page.wait_for_function("(n) => window.impromptu.framesDecoded > n", arg=30, timeout=10_000)
        assert relay.passed(TO_CLIENT) > passed + 30 and relay.passed(TO_TARGET) > 10, relay
        assert relay.counts.unroutable == 0 and relay.dropped() == 0, relay
        # The desktop's side of the pair is the relay too (its figures, protocol.md §10, as the page has them).
        page.wait_for_function(
            "(port) => { const f = window.impromptu.stats?.figures ?? {};"
            " return (f['ice.remote.port'] ?? f.ice?.remote?.port) === port; }",
            arg=relay.port,
            timeout=10_000,
        )
        # 50 ms each way: the page measures a round trip of 100 ms and a little more.
        page.wait_for_function(
            f"async () => {{ const p = await ({SELECTED_PAIR_JS})(); return p && p.rtt_ms !== null; }}",
            timeout=10_000,
        )
        rtt = page.evaluate(SELECTED_PAIR_JS)["rtt_ms"]
        print(f"RTT through the relay at 50 ms each way: {rtt} ms; {relay}")
        assert 100 <= rtt < 160, rtt
        assert not page.errors
        page.close()


def test_the_init_script_rewrites_loopback_candidates_both_ways(browser: Any) -> None:
    """Offer: each UDP host candidate on 127.0.0.1 goes to a relay made for its port, others stay. Answer: the page's
    own such candidates become that relay (this Chromium may have none to rewrite: it gathers on its interfaces)."""
    with PageRouting() as routing:
        page = browser.new_page()
        routing.attach(page)
        page.goto("about:blank")
        result = page.evaluate(
            """async () => {
                const a = new RTCPeerConnection();
                a.createDataChannel('x');
                const offer = await a.createOffer();
                const extra = 'a=candidate:1 1 udp 2130706431 127.0.0.1 9999 typ host generation 0\\r\\n'
                    + 'a=candidate:2 1 udp 2130706431 192.0.2.9 9998 typ host generation 0\\r\\n'
                    + 'a=candidate:3 1 tcp 1518280447 127.0.0.1 9997 typ host tcptype passive generation 0\\r\\n';
                const b = new RTCPeerConnection();
                const sdp = offer.sdp.replace(/(a=mid:0\\r\\n)/, '$1' + extra);
                await b.setRemoteDescription({ type: 'offer', sdp });
                await b.setLocalDescription(await b.createAnswer());
                const local = b.localDescription;
                const answer = window.__impair.rewriteLocal(
                    b, 'a=candidate:4 1 udp 2122260223 127.0.0.1 5555 typ host generation 0\\r\\n'
                    + 'a=candidate:5 1 udp 2122260223 192.0.2.2 5556 typ host generation 0');
                a.close();
                b.close();
                return { remote: b.remoteDescription.sdp, answer, local: local.type, relays: window.__impair.relays };
            }"""
        )
        (relay,) = routing.relays
        assert relay.target == ("127.0.0.1", 9999) and result["relays"] == [relay.port]
        assert f"127.0.0.1 {relay.port} typ host" in result["remote"] and " 9999 " not in result["remote"]
        assert "192.0.2.9 9998 typ host" in result["remote"] and "127.0.0.1 9997 typ host tcptype" in result["remote"]
        assert result["answer"].split("\r\n") == [
            f"a=candidate:4 1 udp 2122260223 127.0.0.1 {relay.port} typ host generation 0",
            "a=candidate:5 1 udp 2122260223 192.0.2.2 5556 typ host generation 0",
        ]
        assert result["local"] == "answer"
        page.close()


@pytest.mark.parametrize(
    ("delay_ms", "loss"),
    [(150, 0.0), (0, 0.05), (150, 0.05)],
    ids=["150ms-each-way", "5%-loss-each-way", "150ms-and-5%-loss-each-way"],
)
def test_a_bad_path_is_the_network(browser: Any, desktop: Desktop, delay_ms: float, loss: float) -> None:
    """The page connects through a clean relay, which then delays and loses datagrams each way."""
    with PageRouting() as routing:
        page = open_page(browser, desktop.url, routing)
        (relay,) = routing.relays
        wait_for_verdict(page, "healthy")
        routing.impair(delay_ms=delay_ms, loss=loss)
        stats, took = wait_for_verdict(page, "network")
        print(f"network {took:.1f} s after {delay_ms} ms/{loss:.0%}: {stats['reasons']}, pair {stats['pair']}; {relay}")
        assert stats["pair"]["remote"]["port"] == relay.port, "the page's stats describe the relayed pair"
        reasons = stats["reasons"]
        rtts = figures(reasons, RTT_FIGURE)
        losses = [f for r in reasons if re.search(r"los[st]", r, re.I) for f in figures([r], r"(\d+(?:\.\d+)?)\s*%")]
        if delay_ms and not loss:
            assert any(r >= 250 for r in rtts), reasons
        elif loss and not delay_ms:
            assert any(f >= 2 for f in losses), reasons
        else:
            assert any(r >= 250 for r in rtts) or any(f >= 2 for f in losses), reasons
        if loss:
            assert relay.counts.lost[TO_TARGET] > 0 and relay.counts.lost[TO_CLIENT] > 0, relay
        page.close()


def test_a_slow_decoder_is_the_viewer(browser: Any, desktop: Desktop) -> None:
    page = open_page(browser, desktop.url)
    wait_for_verdict(page, "healthy")
    page.evaluate("() => window.impromptu.slowDecode(100)")
    stats, took = wait_for_verdict(page, "viewer")
    print(f"viewer after {took:.1f} s: {stats['reasons']}, pipeline {stats['pipeline']}")
    reasons = stats["reasons"]
    assert any(re.search(r"decod|queue|drop", r, re.IGNORECASE) for r in reasons), reasons
    decode = figures(reasons, r"decod\w*[^\d]{0,40}?(\d+(?:\.\d+)?)\s*ms")
    assert any(d > FRAME_INTERVAL_MS for d in decode) or any(re.search(r"queue|drop", r, re.I) for r in reasons)
    assert stats["pipeline"]["decode_ms"] > FRAME_INTERVAL_MS or stats["pipeline"]["queue"] > 3, stats["pipeline"]
    page.close()


def test_a_slow_encoder_is_the_desktop(browser: Any) -> None:
    env = dict(os.environ, IMPROMPTU_TEST_ENCODE_DELAY_MS="60")
    with moving_desktop(env) as desktop:
        page = open_page(browser, desktop.url)
        stats, took = wait_for_verdict(page, "desktop")
        print(f"desktop after {took:.1f} s: {stats['reasons']}")
        reasons = stats["reasons"]
        assert any(re.search(r"encod|captur|fps", r, re.IGNORECASE) for r in reasons), reasons
        encode = figures(reasons, r"(?:encod|captur)\w*[^\d]{0,40}?(\d+(?:\.\d+)?)\s*ms")
        assert any(e > FRAME_INTERVAL_MS for e in encode) or any(re.search(r"fps", r, re.I) for r in reasons)
        page.close()
