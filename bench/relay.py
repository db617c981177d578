"""Relays: what each extra viewer costs a browser that relays a desktop, impromptu's chunk forwarding against
MediaStream relaying, side by side in one run.

    .venv/bin/python bench/relay.py            # both sizes, N = 1..5 (also `bench/run.py --only relay`)
    .venv/bin/python bench/relay.py --quick    # 1280x720, N = 1, 2, short windows

The same moving content (ffplay's testsrc2) at 1280x720@30 and 1920x1080@30, one encode at the desktop, relayed
by a headless Chromium of its own (its own process tree: bench.desktop.dedicated_browser) to N = 1..5 viewers:

(a) chunks: impromptu's relay page, ``/relay?max=5&show=0``, is the only direct viewer of ``impromptu vdisplay
    run --max-direct 1``, so signaling sends every other viewer to it (docs/protocol.md §7). It forwards every
    encoded fragment unchanged on each viewer's DataChannel and decodes nothing. Viewers: ``impromptu probe``
    (reassembles frames, decodes none).
(a') the same, but the page shows the stream too (``/relay?max=5``: one WebCodecs decode for its canvas), as a
    relay someone also watches.
(b) MediaStream: a bench page (bench/web/mediarelay.html) receives the stream as one H.264 video track from
    ``bench/pertrack.py`` (the same capture and libx264 settings as impromptu's desktop; with one viewer, the
    relay, it encodes once), shows it in a ``<video>``, and adds that track to one RTCPeerConnection per viewer:
    WebRTC decodes it once and encodes it again for each viewer, in the codec Chromium prefers (its offer's order;
    the viewer takes the first it supports). Viewers: ``bench/trackprobe.py --answer`` (aiortc, counting frames
    without decoding them). The page is served by the benchmark itself on 127.0.0.1 and descriptions go through
    Playwright and that server: no signaling server, no trickle, host candidates only.

The figure is the relay browser's CPU: utime+stime of every process in its tree, from /proc, over the window in
which every viewer was receiving (bench.common.Sampler, as in bench/fanout.py), after ``WARMUP_S`` more for
Chromium's bandwidth estimate and encoders to settle. With it: each viewer's received frame rate and bit rate,
the upstream desktop's own CPU (for information), and what the relay actually sent, read from the page while it
ran — (a) frames forwarded and skipped per viewer; (b) per viewer, the codec, encoder, frame size and rate
encoded, and WebRTC's ``qualityLimitationReason`` (Chromium scales down when it judges the CPU overused).

The viewers run at ``nice 10``: they stand in for other machines, so that on 2 cores they take what the relay
leaves rather than starve the relay they measure. A series stops after the first N where the machine saturates
(the benchmark's own processes keep ``SATURATED_SHARE`` of all cores busy) or the viewers' median frame rate falls
under ``COLLAPSED_SHARE`` of its N=1 value; the table says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (bench/relay.py): import the benchmarks as the `bench` package, from the repository root.
_REPO = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == _REPO / "bench":
    sys.path[0] = str(_REPO)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from http import HTTPStatus  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from typing import Any, ClassVar, Protocol  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

from bench.common import (  # noqa: E402
    FOREIGN_WARN_PCT,
    INTERRUPTED,
    SIZES,
    Receiver,
    Sampler,
    ffplay_testsrc2,
    fmt,
    install_signal_handlers,
    log,
    median,
    receiving_spans,
    series_failures,
    size_name,
    table,
    wait_until_quiet,
)
from bench.desktop import (  # noqa: E402
    VIEWPORT,
    Browsers,
    BrowserTree,
    Desktop,
    dedicated_browser,
    run_desktop,
    run_pertrack,
)

MODES = ("chunks", "shown", "mediastream")
MODE_LABELS = {"chunks": "(a) chunks", "shown": "(a') chunks, shown", "mediastream": "(b) MediaStream"}
CHUNK_MODES = {"chunks": False, "shown": True}
"""impromptu's relay page, and whether it also shows the stream (decodes it for its canvas): ``?show=0`` relays
only, which is all a relay has to do; (b) cannot do without decoding."""
VIEWERS = (1, 2, 3, 4, 5)
QUICK_VIEWERS = (1, 2)
CAPACITY = 5
"""The relay page's ``?max=``: as many places as the largest N."""
WINDOW_S = 10.0
QUICK_WINDOW_S = 4.0
WARMUP_S = 3.0
QUICK_WARMUP_S = 1.5
"""After the last viewer's first keyframe, before the window: a new sender's encoder settles (rate control,
resolution and frame rate adaptation) in the first seconds of a connection."""
SETTLE_S = 3.0
QUICK_SETTLE_S = 1.5
"""Once the relay shows frames, before its first N: the page's start-up (loading, compiling, first decodes and
paints) is not a viewer's cost."""
END_MARGIN_S = 1.0
JOIN_ALLOWANCE_S = 0.3
"""Per viewer: how much later than the first the last one may start receiving (Python processes importing aiortc
on a busy machine). Viewers receive this much longer, so the window stays about ``WINDOW_S`` long."""
RECEIVER_TIMEOUT_S = 45.0
"""Beyond its S seconds: joining (a first keyframe within 20 s) and closing."""
RECEIVER_NICENESS = 10
STATS_EVERY_S = 1.0
READY_TIMEOUT_S = 30.0
VIEWERS_GONE_TIMEOUT_S = 15.0
ANSWER_TIMEOUT_S = 30.0
QUIET_WAIT_S = 5.0
QUICK_QUIET_WAIT_S = 3.0
MEDIA_CODEC = "auto"
"""(b)'s outgoing codec: ``auto`` leaves Chromium's preference; ``h264`` or ``vp8`` forces one (``--codec``)."""
MEDIA_KBPS = 2500
"""(b)'s bit rate per viewer, pinned (min = start = max) in each viewer's answer: WebRTC's default maximum for a
720p or 1080p stream, which browser viewers on loopback or a LAN reach within seconds. aiortc's viewers estimate
bandwidth with REMB only, from the 300 kbit/s a sender starts at, and climb so slowly that Chromium would send
640x360 at 300 kbit/s for the whole run, "limited: bandwidth": cheaper, and not what a relay does."""

SATURATED_SHARE = 0.9
"""The benchmark's own processes (relay, upstream, display, app, viewers) keep this share of all cores busy (180%
of 200% on 2 cores; with the little else a quiet machine runs, it is full): larger N would measure only
contention. Someone else's load does not count: it only marks the row suspect."""
COLLAPSED_SHARE = 0.8
"""Viewers' median fps under this share of the same series' N=1 median: the relay no longer keeps up."""
PER_VIEWER_TARGET_PCT = 5.0
"""(a): each extra viewer costs the relay at most this much of a core."""
VERSUS_TARGET = 3.0
"""(b) costs the relay at least this many times what (a) does, at N=5."""


@dataclass(frozen=True)
class MediaOptions:
    """How (b) sends to its viewers."""

    codec: str = MEDIA_CODEC
    kbps: int = MEDIA_KBPS


HEADERS = ["size", "mode", "N", "relay %", "+/viewer", "b/a", "relay fps", "fps min", "fps med", "Mbit/s"]
HEADERS += ["relay sent"]
HEADERS += ["upstream %", "Xvfb+app %", "viewers %", "machine %", "other %", "window s"]


# ---- the bench's own web server: the MediaStream relay page, and its viewers' offers ----


class PageServer:
    """bench/web's page and module, and the offer/answer of each MediaStream viewer (``/peer/ID``: GET the offer,
    POST the answer), on 127.0.0.1 port 0, served by a thread. A context manager; ``stop()`` is idempotent."""

    FILES: ClassVar[dict[str, tuple[str, str]]] = {
        "/": ("mediarelay.html", "text/html"),
        "/mediarelay.js": ("mediarelay.js", "text/javascript"),
    }
    ROOT = _REPO / "bench" / "web"

    def __init__(self) -> None:
        self._offers: dict[str, str] = {}
        self._answers: dict[str, str] = {}
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PageServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("PageServer.start() called twice")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="relay-pages", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def offer(self, peer: str, sdp: str) -> str:
        """Hold ``sdp`` for viewer ``peer``; the URL its viewer GETs it from and POSTs its answer to."""
        with self._changed:
            self._offers[peer] = sdp
        return f"{self.url}/peer/{peer}"

    def answer(self, peer: str, timeout: float) -> str:
        """Viewer ``peer``'s answer, once it has POSTed it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while peer not in self._answers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"viewer {peer} did not answer within {timeout:.0f} s")
                self._changed.wait(remaining)
            return self._answers.pop(peer)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: HTTPStatus, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path in server.FILES:
                    name, kind = server.FILES[self.path]
                    self._reply(HTTPStatus.OK, (server.ROOT / name).read_bytes(), f"{kind}; charset=utf-8")
                    return
                peer = self.path.removeprefix("/peer/")
                with server._changed:
                    sdp = server._offers.get(peer) if peer != self.path else None
                if sdp is None:
                    self._reply(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                    return
                self._reply(HTTPStatus.OK, json.dumps({"type": "offer", "sdp": sdp}).encode(), "application/json")

            def do_POST(self) -> None:
                peer = self.path.removeprefix("/peer/")
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length))
                    ok = peer != self.path and body.get("type") == "answer" and isinstance(body.get("sdp"), str)
                except ValueError:
                    ok = False
                if not ok:
                    self._reply(HTTPStatus.BAD_REQUEST, b'expected {"type": "answer", "sdp": "..."}', "text/plain")
                    return
                with server._changed:
                    server._answers[peer] = body["sdp"]
                    server._changed.notify_all()
                self._reply(HTTPStatus.OK, b"{}", "application/json")

        return Handler


# ---- the two relays ----


def receiver_command(program: Sequence[str], url: str, seconds: float, *extra: str) -> list[str]:
    """A viewer process below the relay's priority (see the module's docstring)."""
    return [
        "nice", "-n", str(RECEIVER_NICENESS), sys.executable, "-m", *program, url,
        "--seconds", f"{seconds:g}", "--json", "--ice-address", "127.0.0.1", *extra,
    ]  # fmt: skip


class Relay(Protocol):
    mode: str
    upstream: Desktop
    tree: BrowserTree

    def add_viewers(self, count: int, seconds: float) -> list[Receiver]: ...

    def snapshot(self) -> dict[str, Any]: ...

    def clear_viewers(self) -> None: ...

    def describe(self, first: dict[str, Any], last: dict[str, Any], count: int) -> dict[str, Any]: ...


def relay_link(url: str, capacity: int, show: bool) -> str:
    """The desktop's link, as a relay page's: ``BASE/relay?max=N[&show=0]#c=KEY``."""
    parts = urlsplit(url)
    query = f"max={capacity}" if show else f"max={capacity}&show=0"
    return urlunsplit((parts.scheme, parts.netloc, "/relay", query, parts.fragment))


_CHUNK_SNAPSHOT = """() => {
  const r = window.impromptuRelay;
  return {
    at: performance.now(), state: r.state, framesDecoded: r.framesDecoded, upstream: r.upstream.state,
    downstream: r.downstream.map((d) => ({
      peer: d.peer, open: d.open, bytesSent: d.bytesSent,
      framesForwarded: d.framesForwarded, framesSkipped: d.framesSkipped,
    })),
  };
}"""


class ChunkRelay:
    """(a) impromptu's relay page on its desktop's link; viewers are ``impromptu probe`` processes, which
    signaling sends to the relay since the desktop serves one viewer directly (the relay)."""

    def __init__(self, mode: str, upstream: Desktop, tree: BrowserTree, page: Any) -> None:
        self.mode = mode
        self.shown = CHUNK_MODES[mode]
        self.upstream = upstream
        self.tree = tree
        self.page = page

    def add_viewers(self, count: int, seconds: float) -> list[Receiver]:
        command = receiver_command(["impromptu", "probe"], self.upstream.url, seconds)
        return [Receiver(command, name="relay-viewer") for _ in range(count)]

    def snapshot(self) -> dict[str, Any]:
        return dict(self.page.evaluate(_CHUNK_SNAPSHOT))

    def clear_viewers(self) -> None:
        """Wait until the relay has closed every viewer's connection (they closed theirs), so the next N finds all
        its places free."""
        deadline = time.monotonic() + VIEWERS_GONE_TIMEOUT_S
        while self.snapshot()["downstream"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the relay still serves viewers {VIEWERS_GONE_TIMEOUT_S:.0f} s after they left")
            time.sleep(0.2)

    def describe(self, first: dict[str, Any], last: dict[str, Any], count: int) -> dict[str, Any]:
        elapsed = (last["at"] - first["at"]) / 1000
        before = {d["peer"]: d for d in first["downstream"]}
        forwarded, skipped = [], []
        for d in last["downstream"]:
            b = before.get(d["peer"])
            if b is not None and d["open"]:
                forwarded.append((d["framesForwarded"] - b["framesForwarded"]) / elapsed)
                skipped.append(d["framesSkipped"] - b["framesSkipped"])
        if len(forwarded) < count:
            raise RuntimeError(f"only {len(forwarded)} of {count} viewers were served by the relay: the others went "
                               "to the desktop or waited (is --max-direct 1 working?)")  # fmt: skip
        return {
            "relay_decoded_fps": (last["framesDecoded"] - first["framesDecoded"]) / elapsed if self.shown else None,
            "forwarded_fps": forwarded,
            "skipped_frames": skipped,
            "summary": f"fwd {median(forwarded):.1f} fps, skipped {sum(skipped)}",
        }


class MediaStreamRelay:
    """(b) the bench page relaying one video track from ``bench/pertrack.py`` to a peer connection per viewer;
    viewers are ``bench/trackprobe.py --answer`` processes fetching their offer from ``server``."""

    mode = "mediastream"

    def __init__(
        self, upstream: Desktop, tree: BrowserTree, page: Any, server: PageServer, media: MediaOptions
    ) -> None:
        self.upstream = upstream
        self.tree = tree
        self.page = page
        self.server = server
        self.media = media

    def add_viewers(self, count: int, seconds: float) -> list[Receiver]:
        offers = [self.page.evaluate("(codec) => window.mediaRelay.addViewer(codec)", self.media.codec)
                  for _ in range(count)]  # fmt: skip
        receivers: list[Receiver] = []
        try:
            for offer in offers:
                url = self.server.offer(str(offer["id"]), offer["sdp"])
                receivers.append(Receiver(receiver_command(["bench.trackprobe"], url, seconds, "--answer"),
                                          name="relay-viewer"))  # fmt: skip
            for offer in offers:
                sdp = pin_bitrate(self.server.answer(str(offer["id"]), ANSWER_TIMEOUT_S), self.media.kbps)
                self.page.evaluate("([id, sdp]) => window.mediaRelay.viewerAnswer(id, sdp)", [offer["id"], sdp])
        except BaseException:
            for r in receivers:  # the caller never gets them: stop them here
                r.stop()
            raise
        return receivers

    def snapshot(self) -> dict[str, Any]:
        return dict(self.page.evaluate(
            "async () => ({at: performance.now(), received: await window.mediaRelay.received(),"
            " sent: await window.mediaRelay.sent()})"
        ))  # fmt: skip

    def clear_viewers(self) -> None:
        self.page.evaluate("() => window.mediaRelay.closeViewers()")

    def describe(self, first: dict[str, Any], last: dict[str, Any], count: int) -> dict[str, Any]:
        elapsed = (last["at"] - first["at"]) / 1000
        before = {(s["viewer"], s["id"]): s for s in first["sent"]}
        senders = []
        for s in last["sent"]:
            b = before.get((s["viewer"], s["id"]))
            if b is None:
                continue
            limited = s.get("qualityLimitationDurations") or {}
            limited_before = b.get("qualityLimitationDurations") or {}
            senders.append(
                {
                    "codec": s.get("mimeType", ""),
                    "encoder": s.get("encoderImplementation", ""),
                    "width": s.get("frameWidth", 0),
                    "height": s.get("frameHeight", 0),
                    "encoded_fps": (s.get("framesEncoded", 0) - b.get("framesEncoded", 0)) / elapsed,
                    "sent_kbps": (s.get("bytesSent", 0) - b.get("bytesSent", 0)) * 8 / elapsed / 1000,
                    "target_kbps": s.get("targetBitrate", 0) / 1000,
                    "quality_limitation": s.get("qualityLimitationReason", ""),
                    "cpu_limited_share": (limited.get("cpu", 0) - limited_before.get("cpu", 0)) / elapsed,
                    "bandwidth_limited_share": (limited.get("bandwidth", 0) - limited_before.get("bandwidth", 0))
                    / elapsed,
                    "encode_ms_per_frame": _per_frame_ms(b, s),
                }
            )
        if len(senders) < count:
            raise RuntimeError(f"the page reports {len(senders)} senders for {count} viewers")
        received = last.get("received") or {}
        before_received = first.get("received") or {}
        codecs = sorted({s["codec"].removeprefix("video/") for s in senders})
        encoders = sorted({s["encoder"] for s in senders if s["encoder"]})
        sizes = sorted({(s["width"], s["height"]) for s in senders})
        limits = sorted({s["quality_limitation"] for s in senders if s["quality_limitation"] not in ("", "none")})
        summary = f"{'/'.join(codecs)} {'/'.join(f'{w}x{h}' for w, h in sizes)}"
        summary += f" {median([s['encoded_fps'] for s in senders]):.0f} fps"
        if limits:
            summary += f", limited: {'/'.join(limits)}"
        return {
            "relay_decoded_fps": (received.get("framesDecoded", 0) - before_received.get("framesDecoded", 0)) / elapsed,
            "senders": senders,
            "codecs": codecs,
            "encoders": encoders,
            "summary": summary,
        }


PINNED_CODECS = ("VP8", "VP9", "H264", "AV1")


def pin_bitrate(sdp: str, kbps: int) -> str:
    """``sdp`` (an answer to Chromium) with every video codec's bit rate pinned at ``kbps``: Chromium's
    ``x-google-{min,start,max}-bitrate`` format parameters, added to each codec's ``a=fmtp`` line (or a new one)."""
    pin = f"x-google-min-bitrate={kbps};x-google-start-bitrate={kbps};x-google-max-bitrate={kbps}"
    lines = sdp.splitlines()
    video = False
    codecs: list[str] = []
    for line in lines:
        if line.startswith("m="):
            video = line.startswith("m=video")
        elif video and line.startswith("a=rtpmap:"):
            pt, _, name = line[len("a=rtpmap:") :].partition(" ")
            if name.split("/")[0].upper() in PINNED_CODECS:
                codecs.append(pt)
    out: list[str] = []
    for line in lines:
        if line.startswith("a=fmtp:") and line[len("a=fmtp:") :].partition(" ")[0] in codecs:
            pt = line[len("a=fmtp:") :].partition(" ")[0]
            line = f"{line};{pin}"
            codecs.remove(pt)
        out.append(line)
    pinned: list[str] = []
    for line in out:
        pinned.append(line)
        if line.startswith("a=rtpmap:") and line[len("a=rtpmap:") :].partition(" ")[0] in codecs:
            pinned.append(f"a=fmtp:{line[len('a=rtpmap:') :].partition(' ')[0]} {pin}")
    return "\r\n".join(pinned) + "\r\n"


def _per_frame_ms(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    frames = int(after.get("framesEncoded", 0)) - int(before.get("framesEncoded", 0))
    if frames <= 0 or "totalEncodeTime" not in after:
        return None
    return 1000.0 * (float(after["totalEncodeTime"]) - float(before.get("totalEncodeTime", 0.0))) / frames


def _wait(page: Any, predicate: str, what: str) -> None:
    """Poll ``predicate`` (a JS function, maybe async) in the page until it is true."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.2)


@contextmanager
def _page(tree: BrowserTree, url: str) -> Iterator[Any]:
    page = tree.browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(url)
        yield page
    finally:
        with contextlib.suppress(Exception):  # the browser may be gone already (Ctrl-C)
            page.close()


@contextmanager
def open_relay(mode: str, size: tuple[int, int], browsers: Browsers, media: MediaOptions) -> Iterator[Relay]:
    """The upstream desktop, a dedicated Chromium, and its relay page receiving frames."""
    if mode in CHUNK_MODES:
        options = ["--max-direct", "1"]
        shown = CHUNK_MODES[mode]
        with (
            run_desktop(size, ffplay_testsrc2(size), options=options) as desktop,
            dedicated_browser(browsers) as tree,
            _page(tree, relay_link(desktop.url, CAPACITY, shown)) as page,
        ):
            got = "r.framesDecoded > 0" if shown else "r.upstream.bytesReceived > 0"
            _wait(
                page,
                f"() => {{ const r = window.impromptuRelay; return !!r && {got} && r.capacity > 0"
                " && r.upstream.state === 'connected'; }",
                "the relay page got no frame from its desktop",
            )
            yield ChunkRelay(mode, desktop, tree, page)
    else:
        with (
            PageServer() as server,
            run_pertrack(size) as desktop,
            dedicated_browser(browsers) as tree,
            _page(tree, server.url + "/") as page,
        ):
            _wait(page, "() => window.mediaRelay !== undefined", "the MediaStream page did not load")
            offer = page.evaluate("() => window.mediaRelay.upstreamOffer()")
            answer = _post_offer(desktop.url, offer)
            page.evaluate("(sdp) => window.mediaRelay.upstreamAnswer(sdp)", answer)
            _wait(
                page,
                "async () => ((await window.mediaRelay.received()) || {}).framesDecoded > 0",
                "the MediaStream page decoded no frame from bench/pertrack.py",
            )
            yield MediaStreamRelay(desktop, tree, page, server, media)


def _post_offer(url: str, sdp: str) -> str:
    """POST the page's offer to bench/pertrack.py's (loopback) endpoint; its answer."""
    if urlsplit(url).hostname != "127.0.0.1":
        raise RuntimeError(f"{url} is not on 127.0.0.1: this benchmark stays on loopback")
    request = urllib.request.Request(
        url, json.dumps({"type": "offer", "sdp": sdp}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.loads(response.read())["sdp"])


# ---- the benchmark ----


def measure(relay: Relay, viewers: int, window_s: float, warmup_s: float) -> dict[str, Any]:
    """N viewers on ``relay`` at once; the relay browser's CPU while all of them were receiving."""
    seconds = warmup_s + window_s + END_MARGIN_S + JOIN_ALLOWANCE_S * viewers
    receivers: list[Receiver] = []
    snapshots: list[tuple[float, dict[str, Any]]] = []
    try:
        with Sampler("relay-sampler") as sampler:
            receivers = relay.add_viewers(viewers, seconds)
            deadline = time.monotonic() + seconds + RECEIVER_TIMEOUT_S
            next_snapshot = time.monotonic()
            while any(r.proc.poll() is None for r in receivers) and time.monotonic() < deadline:
                if time.monotonic() >= next_snapshot:
                    snapshots.append((time.monotonic(), relay.snapshot()))
                    next_snapshot = max(next_snapshot + STATS_EVERY_S, time.monotonic())
                time.sleep(0.05)
            results = [r.wait(max(0.1, deadline - time.monotonic())) for r in receivers]
    finally:
        for r in receivers:
            r.stop()
    relay.clear_viewers()
    if not relay.upstream.alive():
        raise RuntimeError(f"the desktop exited during the measurement: {' | '.join(relay.upstream.output)}")
    spans = receiving_spans(receivers, results, seconds)
    start = max(s for s, _ in spans) + warmup_s
    end = min(e for _, e in spans) - END_MARGIN_S
    relay_pids = relay.tree.pids()
    groups = {
        "relay": relay_pids,
        **{f"relay {kind}": pids for kind, pids in chromium_kinds(relay_pids).items()},
        "upstream": [relay.upstream.pid],
        "display+app": [pid for pids in relay.upstream.children().values() for pid in pids],
        "viewers": [r.pid for r in receivers],
    }
    percent, covered = sampler.percent(start, end, groups)
    inside = [snap for at, snap in snapshots if start <= at <= end]
    if len(inside) < 2:
        raise RuntimeError(f"fewer than 2 snapshots of the relay page in a {covered:.1f} s window")
    return {
        "mode": relay.mode,
        "viewers": viewers,
        "seconds": covered,
        "receive_s": seconds,
        "join_spread_s": max(s for s, _ in spans) - min(s for s, _ in spans),
        "cpu_pct": percent,
        "viewer_fps": [float(res["fps"]) for res in results],
        "viewer_kbps": [float(res.get("bitrate_kbps", 0.0)) for res in results],
        "viewer_lost": [res.get("lost") for res in results],
        "viewer_codec": sorted({str(res.get("codec", "")) for res in results if res.get("codec")}),
        "relay_sent": relay.describe(inside[0], inside[-1], viewers),
    }


def chromium_kinds(pids: Sequence[int]) -> dict[str, list[int]]:
    """Chromium's processes by ``--type=`` (renderer, gpu-process, utility, zygote; ``browser`` without one), from
    /proc/PID/cmdline, so the JSON results show where a relay's CPU goes."""
    kinds: dict[str, list[int]] = {}
    for pid in pids:
        try:
            # Chromium's children rewrite their title: one string with spaces rather than NUL-separated words.
            args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
        except OSError:
            continue
        kind = next((a[len(b"--type=") :].decode() for a in args if a.startswith(b"--type=")), "browser")
        kinds.setdefault(kind, []).append(pid)
    return kinds


def saturation(row: dict[str, Any], first: dict[str, Any] | None) -> str:
    """Why a series should stop after ``row`` (``""``: it need not)."""
    cores = os.cpu_count() or 1
    own = row["cpu_pct"]["machine"] - row["cpu_pct"]["foreign"]
    if own >= SATURATED_SHARE * cores * 100:
        return f"{cores} cores saturated at N={row['viewers']} (the benchmark's processes: {own:.0f} %)"
    fps = median(row["viewer_fps"])
    if first is not None and row is not first and fps < COLLAPSED_SHARE * median(first["viewer_fps"]):
        return f"viewers' fps collapsed at N={row['viewers']} ({fps:.1f} vs {median(first['viewer_fps']):.1f} at N=1)"
    return ""


def run(
    sizes: Sequence[tuple[int, int]] = SIZES,
    quick: bool = False,
    browsers: Browsers | None = None,
    media: MediaOptions | None = None,
    modes: Sequence[str] = MODES,
) -> list[dict[str, Any]]:
    """Every size × mode × N; a mode that fails is recorded as failed and the other still runs."""
    own = browsers is None
    browsers = Browsers() if browsers is None else browsers
    sizes = sizes[:1] if quick else sizes
    window_s = QUICK_WINDOW_S if quick else WINDOW_S
    warmup_s = QUICK_WARMUP_S if quick else WARMUP_S
    counts = QUICK_VIEWERS if quick else VIEWERS
    rows: list[dict[str, Any]] = []
    try:
        for size in sizes:
            for mode in modes:
                log(f"relay {size_name(size)} {MODE_LABELS[mode]}: {', '.join(map(str, counts))} viewers, "
                    f"~{warmup_s + window_s:.0f} s each")  # fmt: skip
                rows.extend(_series(mode, size, counts, browsers, media or MediaOptions(), window_s, warmup_s, quick))
    finally:
        if own:
            browsers.close()
    return rows


def _series(
    mode: str,
    size: tuple[int, int],
    counts: Sequence[int],
    browsers: Browsers,
    media: MediaOptions,
    window_s: float,
    warmup_s: float,
    quick: bool,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    head = {"size": size_name(size), "mode": mode}
    try:
        with open_relay(mode, size, browsers, media) as relay:
            version = str(relay.tree.browser.version)
            time.sleep(QUICK_SETTLE_S if quick else SETTLE_S)
            for viewers in counts:
                # Someone else's burst of load spoils one row, not all: wait for it to pass (bounded).
                wait_until_quiet(QUICK_QUIET_WAIT_S if quick else QUIET_WAIT_S, sample_s=0.5)
                row = {**head, **measure(relay, viewers, window_s, warmup_s), "chromium": version}
                if mode == "mediastream":
                    row["media"] = {"codec": media.codec, "kbps": media.kbps}
                rows.append(row)
                stop = saturation(row, rows[0])
                row["saturated"] = stop
                log(f"  {viewers} viewer(s): relay {row['cpu_pct']['relay']:.1f} %, machine "
                    f"{row['cpu_pct']['machine']:.0f} %, fps {' '.join(f'{f:.1f}' for f in row['viewer_fps'])}; "
                    f"{row['relay_sent']['summary']}")  # fmt: skip
                if stop:
                    log(f"  stopping this series: {stop}")
                    rows.extend({**head, "viewers": n, "skipped": stop} for n in counts if n > viewers)
                    break
    except Exception as exc:  # recorded in the table and the summary; the next mode still runs
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt from exc
        error = f"{type(exc).__name__}: {exc}"
        log(f"relay {size_name(size)} {MODE_LABELS[mode]} failed: {error}")
        done = {r["viewers"] for r in rows}
        rows.extend({**head, "viewers": n, "error": error} for n in counts if n not in done)
    return rows


# ---- the table and the verdicts ----


def failures(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """One line per size and mode that failed."""
    return series_failures(rows, "relay", MODE_LABELS)


def _index(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(r["size"], r["mode"], r["viewers"]): r for r in rows if "cpu_pct" in r}


def per_extra_viewer(rows: Sequence[dict[str, Any]], size: str, mode: str, n: int) -> float | None:
    """(cpu(N) − cpu(1)) / (N − 1): what each viewer beyond the first costs the relay, % of one core."""
    index = _index(rows)
    one, row = index.get((size, mode, 1)), index.get((size, mode, n))
    if n < 2 or one is None or row is None:
        return None
    return float((row["cpu_pct"]["relay"] - one["cpu_pct"]["relay"]) / (n - 1))


def versus(rows: Sequence[dict[str, Any]], size: str, n: int) -> float | None:
    """(b)'s relay CPU over (a)'s at the same N."""
    index = _index(rows)
    a, b = index.get((size, "chunks", n)), index.get((size, "mediastream", n))
    if a is None or b is None or a["cpu_pct"]["relay"] <= 0:
        return None
    return float(b["cpu_pct"]["relay"] / a["cpu_pct"]["relay"])


def render(rows: Sequence[dict[str, Any]]) -> str:
    out = []
    stops: dict[str, str] = {}
    for r in rows:
        head = [r["size"], MODE_LABELS[r["mode"]], str(r["viewers"])]
        if "error" in r:
            out.append([*head, "failed", *["—"] * (len(HEADERS) - 4)])
            continue
        if "skipped" in r:
            out.append([*head, "not run", *["—"] * (len(HEADERS) - 4)])
            stops[f"{r['size']} {MODE_LABELS[r['mode']]}"] = r["skipped"]
            continue
        cpu = r["cpu_pct"]
        extra = per_extra_viewer(rows, r["size"], r["mode"], r["viewers"])
        ratio = versus(rows, r["size"], r["viewers"]) if r["mode"] == "mediastream" else None
        out.append(
            [
                *head,
                fmt(cpu["relay"]),
                fmt(extra),
                fmt(ratio, 2) + "x" if ratio is not None else "—",
                fmt(r["relay_sent"]["relay_decoded_fps"]),
                fmt(min(r["viewer_fps"])),
                fmt(median(r["viewer_fps"])),
                fmt(median(r["viewer_kbps"]) / 1000, 2),
                r["relay_sent"]["summary"],
                fmt(cpu["upstream"]),
                fmt(cpu["display+app"]),
                fmt(cpu["viewers"]),
                fmt(cpu["machine"]) + ("!" if r.get("saturated") else ""),
                fmt(cpu["foreign"]) + ("?" if cpu["foreign"] > FOREIGN_WARN_PCT else ""),
                fmt(r["seconds"]),
            ]
        )
    measured = [r for r in rows if "cpu_pct" in r]
    codecs = sorted({c for r in measured if r["mode"] == "mediastream" for c in r["relay_sent"]["codecs"]})
    encoders = sorted({e for r in measured if r["mode"] == "mediastream" for e in r["relay_sent"]["encoders"]})
    chromium = next((r["chromium"] for r in measured), "")
    kbps = sorted({r["media"]["kbps"] for r in measured if "media" in r})
    return table(
        "Relays: the relay browser's CPU against its number of viewers (% of one core)",
        HEADERS,
        out,
        [
            f"(a) impromptu's /relay?show=0 page (Chromium {chromium}): every encoded fragment forwarded unchanged on "
            "each viewer's DataChannel, nothing decoded; (a') the same page showing the stream too (/relay: one "
            "WebCodecs decode for its canvas); viewers `impromptu probe`.",
            "(b) bench/web/mediarelay.html: the desktop's H.264 track received once, shown in a <video>, added to "
            f"one RTCPeerConnection per viewer (sent as {', '.join(codecs) or '?'}, encoder "
            f"{', '.join(encoders) or 'not exposed'}) at {'/'.join(map(str, kbps)) or '?'} kbit/s per viewer, pinned "
            "(aiortc's REMB would hold Chromium at 300 kbit/s, 640x360); viewers bench/trackprobe.py.",
            "Upstream: (a) impromptu vdisplay run --max-direct 1; (b) bench/pertrack.py; the same testsrc2, capture "
            "and libx264 settings, one encode each.",
            "relay %: utime+stime of every process of the relay's Chromium over the window in which every viewer "
            "was receiving (window s); +/viewer: (relay %(N) − relay %(1)) / (N − 1); b/a: (b)'s relay % over (a)'s at "
            "that N.",
            "relay fps: frames the relay decoded for itself per second ((a) decodes none); fps min/med, "
            "Mbit/s: what each viewer received (from its first keyframe on). relay sent: (a) frames forwarded per "
            "viewer and skipped for backpressure; (b) the codec, size, median encoded fps and "
            "qualityLimitationReason when not none.",
            "upstream %: the desktop process itself; Xvfb+app %: its display and ffplay; viewers %: all viewer "
            "processes (nice 10); machine %: every core busy (!: the series stopped after this row, see below); "
            f"other %: processes the benchmark did not start (?: above {FOREIGN_WARN_PCT:.0f}, that row is suspect).",
            *(f"{name}: stopped, {why}" for name, why in stops.items()),
            *(f"{name} failed: {error}" for name, error in failures(rows).items()),
        ],
        align="lll" + "r" * 7 + "l" + "r" * 6,
    )


def _largest(rows: Sequence[dict[str, Any]], size: str, mode: str) -> tuple[int, str]:
    """The largest N measured for (size, mode), and why no larger one was: the series stopped (saturation), or
    the run did not ask for more (--quick)."""
    index = _index(rows)
    ns = sorted(n for (s, m, n) in index if s == size and m == mode)
    stop = next((r["skipped"] for r in rows if r["size"] == size and r["mode"] == mode and "skipped" in r), "")
    n = ns[-1] if ns else 0
    if n == VIEWERS[-1] or n == 0:
        return n, ""
    return n, f"stopped: {stop}" if stop else f"N={n} was the largest asked for"


def summary_rows(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str, str, bool | None]]:
    """(target, goal, measured, reference, ok) for the run's summary, per size: (a)'s cost per extra viewer, from
    N=1 to the largest N it reached; and (b) against (a) at N=5, judged only if both reached it (otherwise the
    largest N both reached is shown, and (b) extrapolated to N=5 from its own cost per extra viewer)."""
    index = _index(rows)
    last = VIEWERS[-1]
    out: list[tuple[str, str, str, str, bool | None]] = []
    for size in map(size_name, SIZES):
        n, why = _largest(rows, size, "chunks")
        extra = per_extra_viewer(rows, size, "chunks", n)
        ok: bool | None = None
        measured = "—"
        if extra is not None:
            a1, an = index[(size, "chunks", 1)], index[(size, "chunks", n)]
            measured = (f"{extra:.1f} % per viewer (N=1→{n}: {a1['cpu_pct']['relay']:.1f} → "
                        f"{an['cpu_pct']['relay']:.1f} %); slowest viewer {min(an['viewer_fps']):.1f} fps")  # fmt: skip
            measured += f" ({why})" if why else ""
            ok = extra <= PER_VIEWER_TARGET_PCT
        out.append((f"relay {size}@30: (a) chunks, cost per extra viewer", f"≤ {PER_VIEWER_TARGET_PCT:.0f} % of a "
                    "core", measured, "—", ok))  # fmt: skip
        common = sorted(n for (s, m, n) in index if s == size and m == "mediastream" and (size, "chunks", n) in index)
        n = common[-1] if common else 0
        ratio = versus(rows, size, n) if n else None
        measured, reference, ok = "—", "—", None
        if ratio is not None:
            a, b = index[(size, "chunks", n)], index[(size, "mediastream", n)]
            measured = f"{b['cpu_pct']['relay']:.1f} % vs {a['cpu_pct']['relay']:.1f} % ({ratio:.2f}x) at N={n}"
            reference = f"(b) sent {b['relay_sent']['summary']}"
            if n == last:
                ok = ratio >= VERSUS_TARGET
            else:
                b_n, b_why = _largest(rows, size, "mediastream")
                _, a_why = _largest(rows, size, "chunks")
                measured += f"; N={last} not reached: " + "; ".join(
                    f"{label} {w}" for label, w in (("(a)", a_why), ("(b)", b_why)) if w
                )
                b_extra = per_extra_viewer(rows, size, "mediastream", b_n)
                a_last = index.get((size, "chunks", last))
                if b_extra is not None:
                    guess = index[(size, "mediastream", 1)]["cpu_pct"]["relay"] + b_extra * (last - 1)
                    measured += f"; (b) extrapolated to N={last}: {guess:.0f} %"
                    if a_last is not None and a_last["cpu_pct"]["relay"] > 0:
                        measured += f" ({guess / a_last['cpu_pct']['relay']:.1f}x (a))"
        out.append((f"relay {size}@30: (b) MediaStream vs (a) chunks, N={last}", f"≥ {VERSUS_TARGET:.0f}x (a)",
                    measured, reference, ok))  # fmt: skip
    return out


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The docs' table (docs/benchmarks.md): relay CPU per N, cost per extra viewer, (b)/(a), slowest viewer."""
    index = _index(rows)
    lines = [
        "| size | mode | "
        + " | ".join(f"N={n}" for n in VIEWERS)
        + " | per extra viewer | (b)/(a) | fps med (min) | sent |",
        "|---|---|" + "---|" * (len(VIEWERS) + 4),
    ]
    for size in dict.fromkeys(r["size"] for r in rows):
        for mode in MODES:
            ns = [n for n in VIEWERS if (size, mode, n) in index]
            if not ns:
                continue
            cells = [fmt(index[(size, mode, n)]["cpu_pct"]["relay"]) if n in ns else "—" for n in VIEWERS]
            last = index[(size, mode, ns[-1])]
            extra = per_extra_viewer(rows, size, mode, ns[-1])
            ratio = versus(rows, size, ns[-1]) if mode == "mediastream" else None
            why = _largest(rows, size, mode)[1]
            stop = "" if not why else f" (stopped at N={ns[-1]})" if why.startswith("stopped") else f" (N≤{ns[-1]})"
            lines.append(
                f"| {size} | {MODE_LABELS[mode]} | {' | '.join(cells)} | {fmt(extra)} %{stop} | "
                f"{fmt(ratio, 2) + 'x' if ratio is not None else '—'} | "
                f"{median(last['viewer_fps']):.1f} ({min(last['viewer_fps']):.1f}) | {last['relay_sent']['summary']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1280x720, N = 1, 2, short windows: a smoke run")
    parser.add_argument("--mode", choices=MODES, action="append", help="only this mode (repeatable)")
    parser.add_argument("--size", choices=[size_name(s) for s in SIZES], action="append", help="only this size")
    parser.add_argument("--codec", choices=["auto", "vp8", "h264"], default=MEDIA_CODEC,
                        help="(b)'s outgoing codec (default: Chromium's choice)")  # fmt: skip
    parser.add_argument(
        "--kbps", type=int, default=MEDIA_KBPS, help=f"(b)'s bit rate per viewer (default {MEDIA_KBPS})"
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="JSON",
        help="measure nothing: print the docs' table from a results file (bench/run.py's, or this one's --json)",
    )
    args = parser.parse_args(argv)
    if args.markdown is not None:
        document = json.loads(args.markdown.read_text())
        rows = document["results"]["relay"] if isinstance(document, dict) else document
        print(markdown(rows))
        return 0
    install_signal_handlers()
    sizes = [s for s in SIZES if size_name(s) in args.size] if args.size else list(SIZES)
    try:
        rows = run(sizes, args.quick, media=MediaOptions(args.codec, args.kbps), modes=args.mode or MODES)
    except KeyboardInterrupt:
        # A terminal's Ctrl-C also reached Playwright's driver, which is gone: quiet its leftover futures.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        log("interrupted: stopped everything it started")
        return 130
    print(render(rows), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if failures(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
