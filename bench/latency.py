"""Glass-to-glass latency through a real browser, on one clock.

An X client in this process draws the wall clock (µs since the epoch, lower ``BITS`` bits) as a bar code at the
top-left of the shared screen, about every millisecond: on an otherwise still screen (the reference method), and
again while testsrc2 fills the rest of it (a loaded desktop: on 2 cores, ffplay, Chromium and the desktop then
compete for the CPU). In the viewer page,
a wrapper around ``CanvasRenderingContext2D.drawImage`` reads the bar code back off each decoded picture right
after it is painted, and records "now - clock shown". Both ends read the same machine's clock.

Bar code: ``BITS`` blocks of ``BLOCK`` x ``BLOCK`` px (aligned on H.264 macroblocks), most significant bit first,
white = 1; a second row holds the complement, so a reading whose rows disagree anywhere (codec noise, a stale
macroblock) is rejected rather than counted. Each value is put together in a pixmap and copied to the window in
one request, which the X server handles atomically with respect to the desktop's screen grabs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from Xlib import X
from Xlib.display import Display

from bench.common import (
    SELKIES_G2G_MS,
    X11VNC_G2G_MS,
    CpuMeter,
    ffplay_testsrc2,
    fmt,
    log,
    median,
    p95,
    size_name,
    table,
)
from bench.desktop import Browsers, run_desktop, viewer

BITS = 40  # a whole number of bytes
BLOCK = 16
MOD = 1 << BITS
WARMUP_S = 2.0
RESTACK_EVERY_S = 0.5

# Runs in the page before its own modules (injected by Playwright through the DevTools protocol, so the page's
# CSP does not apply). It keeps results in `window.__impromptuG2G`; nothing in the page's own code changes. Besides
# the bar code, it notes when the last fragment of each frame arrived (by wrapping the `video` channel's
# `onmessage`), to split the latency into the desktop+network part and the browser part.
PROBE_JS = """
(() => {
  const BITS = @BITS@, BLOCK = @BLOCK@, MOD = 2 ** BITS, MAX_SAMPLES = 100000, HEADER = 24;
  const WIDTH = BITS * BLOCK;
  const probe = { samples: [], rejected: 0, painted: 0 };
  Object.defineProperty(window, '__impromptuG2G', { value: probe });
  const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;
  const since = (laterUs, earlierUs) => ((((laterUs - earlierUs) % MOD) + MOD) % MOD) / 1000;

  // capture_us -> [last fragment's arrival (µs), fragments seen, fragments in the frame]
  const arrivals = new Map();
  const noteFragment = (data) => {
    if (!(data instanceof ArrayBuffer) || data.byteLength < HEADER) return;
    const view = new DataView(data, 0, HEADER);
    const captureUs = Number(view.getBigUint64(16, true));
    let seen = arrivals.get(captureUs);
    if (seen === undefined) {
      seen = [0, 0, view.getUint16(10, true)];
      arrivals.set(captureUs, seen);
      if (arrivals.size > 64) arrivals.delete(arrivals.keys().next().value);
    }
    seen[0] = nowUs();
    seen[1] += 1;
  };
  const onmessage = Object.getOwnPropertyDescriptor(RTCDataChannel.prototype, 'onmessage');
  Object.defineProperty(RTCDataChannel.prototype, 'onmessage', {
    configurable: true,
    enumerable: onmessage.enumerable,
    get() {
      return onmessage.get.call(this);
    },
    set(handler) {
      if (this.label !== 'video' || typeof handler !== 'function') {
        onmessage.set.call(this, handler);
        return;
      }
      onmessage.set.call(this, function (ev) {
        noteFragment(ev.data);
        return handler.call(this, ev);
      });
    },
  });

  const bitAt = (px, row, i) => {
    const o = ((row * BLOCK + BLOCK / 2) * WIDTH + i * BLOCK + BLOCK / 2) * 4;
    return px[o] + px[o + 1] + px[o + 2] >= 384 ? 1 : 0;  // threshold at mid-grey
  };
  const drawImage = CanvasRenderingContext2D.prototype.drawImage;
  CanvasRenderingContext2D.prototype.drawImage = function (...args) {
    const result = drawImage.apply(this, args);
    const src = args[0];
    if (this.canvas.id !== 'screen' || typeof VideoFrame === 'undefined' || !(src instanceof VideoFrame)) {
      return result;
    }
    const paintedUs = nowUs();
    probe.painted += 1;
    if (this.canvas.width < WIDTH || this.canvas.height < 2 * BLOCK) return result;
    const px = this.getImageData(0, 0, WIDTH, 2 * BLOCK).data;
    let shown = 0;
    for (let i = 0; i < BITS; i++) {
      const bit = bitAt(px, 0, i);
      if (bitAt(px, 1, i) === bit) {
        probe.rejected += 1;
        return result;
      }
      shown = shown * 2 + bit;
    }
    const latencyMs = since(paintedUs % MOD, shown);
    if (latencyMs > 10000) {  // a clock "from the future" (or a misread): wraps to a huge value
      probe.rejected += 1;
      return result;
    }
    if (probe.samples.length < MAX_SAMPLES) {
      const captureUs = src.timestamp;
      const seen = arrivals.get(captureUs);
      const receivedUs = seen !== undefined && seen[1] >= seen[2] ? seen[0] : null;
      // [glass to glass, clock drawn → grabbed, grabbed → painted, grabbed → received, received → painted], in ms.
      probe.samples.push([
        latencyMs,
        since(captureUs % MOD, shown),
        (paintedUs - captureUs) / 1000,
        receivedUs === null ? null : (receivedUs - captureUs) / 1000,
        receivedUs === null ? null : (paintedUs - receivedUs) / 1000,
      ]);
    }
    return result;
  };
})();
""".replace("@BITS@", str(BITS)).replace("@BLOCK@", str(BLOCK))


class BarcodeClock:
    """An override-redirect window at (0, 0) on ``display`` showing the wall clock, redrawn every millisecond."""

    def __init__(self, display: str) -> None:
        self._d = Display(display)
        screen = self._d.screen()
        width, height = BITS * BLOCK, 2 * BLOCK
        self._window = screen.root.create_window(
            0, 0, width, height, 0, screen.root_depth,
            background_pixel=screen.black_pixel, override_redirect=True,
        )  # fmt: skip
        depth = screen.root_depth
        self._staging = self._window.create_pixmap(width, height, depth)
        self._gc = self._staging.create_gc(graphics_exposures=False)
        black = self._staging.create_gc(foreground=screen.black_pixel, graphics_exposures=False)
        white = self._staging.create_gc(foreground=screen.white_pixel, graphics_exposures=False)
        # One ready-made tile per byte value (8 blocks, complement below): a value is drawn with one small copy
        # per byte that changed, then one copy of the whole bar code to the window.
        self._tiles = []
        for byte in range(256):
            tile = self._window.create_pixmap(8 * BLOCK, 2 * BLOCK, depth)
            ones: list[tuple[int, int, int, int]] = []
            zeros: list[tuple[int, int, int, int]] = []
            for i in range(8):
                bit = (byte >> (7 - i)) & 1
                (ones if bit else zeros).append((i * BLOCK, 0, BLOCK, BLOCK))
                (zeros if bit else ones).append((i * BLOCK, BLOCK, BLOCK, BLOCK))
            tile.poly_fill_rectangle(white, ones)
            tile.poly_fill_rectangle(black, zeros)
            self._tiles.append(tile)
        self._shown: list[int | None] = [None] * (BITS // 8)
        self._size = (width, height)
        self._window.map()
        self._d.sync()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="barcode-clock", daemon=True)
        self.draws = 0
        self.cpu_s = 0.0
        """CPU time this drawing thread has used so far."""
        self.error: BaseException | None = None

    def start(self) -> BarcodeClock:
        self._thread.start()
        return self

    def draw(self, now_us: int) -> None:
        value = now_us % MOD
        for i in range(BITS // 8):
            byte = (value >> (BITS - 8 * (i + 1))) & 0xFF
            if self._shown[i] != byte:
                self._shown[i] = byte
                self._staging.copy_area(self._gc, self._tiles[byte], 0, 0, 8 * BLOCK, 2 * BLOCK, 8 * BLOCK * i, 0)
        # One request: the X server never shows a half-updated bar code to a screen grab.
        self._window.copy_area(self._gc, self._staging, 0, 0, *self._size, 0, 0)
        self._d.flush()
        self.draws += 1

    def _run(self) -> None:
        try:
            restack_at = 0.0
            while not self._stop.is_set():
                if time.monotonic() >= restack_at:
                    # Stay above the app's window, whenever that one is mapped.
                    self._window.configure(stack_mode=X.Above)
                    restack_at = time.monotonic() + RESTACK_EVERY_S
                now_us = time.time_ns() // 1000
                self.draw(now_us)
                self.cpu_s = time.thread_time()
                # Sleep to the next millisecond boundary: the clock shown is at most ~1 ms old.
                time.sleep((1000 - now_us % 1000) / 1e6)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with contextlib.suppress(Exception):  # the display may be gone already
            self._d.close()


STILL_APP = ("sleep", "infinity")


def measure(
    size: tuple[int, int], browsers: Browsers, seconds: float, warmup: float = WARMUP_S, loaded: bool = False
) -> dict[str, Any]:
    with run_desktop(size, ffplay_testsrc2(size) if loaded else STILL_APP) as desktop:
        clock = BarcodeClock(desktop.display).start()
        try:
            with viewer(browsers, desktop.url, init_script=PROBE_JS) as page:
                time.sleep(warmup)
                page.evaluate(
                    "() => { const p = window.__impromptuG2G; p.samples.length = 0; p.rejected = 0; p.painted = 0; }"
                )
                draws_before, clock_cpu_before = clock.draws, clock.cpu_s
                meter = CpuMeter({"impromptu": [desktop.pid], "chromium": browsers.chromium_pids()})
                meter.start()
                time.sleep(seconds)
                probe = page.evaluate("() => window.__impromptuG2G")
                cpu_pct = meter.stop()
                elapsed = meter.seconds
                draws = clock.draws - draws_before
                cpu_pct["clock"] = 100 * (clock.cpu_s - clock_cpu_before) / elapsed
        finally:
            clock.stop()
        if clock.error is not None:
            raise RuntimeError(f"the bar-code clock failed: {clock.error!r}")
    samples: list[list[float | None]] = probe["samples"]

    def column(i: int) -> list[float]:
        return [v for s in samples if (v := s[i]) is not None]

    g2g, age, pipeline, to_receive, to_paint = (column(i) for i in range(5))
    if not g2g:
        raise RuntimeError(f"no bar code read back at {size_name(size)} ({probe['rejected']} rejected readings)")
    return {
        "size": size_name(size),
        "loaded": loaded,
        "seconds": elapsed,
        "count": len(g2g),
        "rejected": probe["rejected"],
        "painted": probe["painted"],
        "viewer_fps": probe["painted"] / elapsed,
        "clock_draws_per_s": draws / elapsed,
        "cpu_pct": cpu_pct,
        "g2g_ms": {"median": median(g2g), "p95": p95(g2g), "min": min(g2g), "max": max(g2g)},
        "clock_to_capture_ms": {"median": median(age), "p95": p95(age)},
        "capture_to_paint_ms": {"median": median(pipeline), "p95": p95(pipeline)},
        "capture_to_receive_ms": {"median": median(to_receive), "p95": p95(to_receive)},
        "receive_to_paint_ms": {"median": median(to_paint), "p95": p95(to_paint)},
    }


def run(sizes: tuple[tuple[int, int], ...], browsers: Browsers, quick: bool) -> list[dict[str, Any]]:
    seconds = 4.0 if quick else 10.0
    results = []
    for loaded in (False, True):
        for size in sizes:
            scene = "over testsrc2" if loaded else "on a still screen"
            log(f"glass-to-glass {size_name(size)}@30: bar-code clock {scene} for {seconds:.0f} s")
            results.append(measure(size, browsers, seconds, WARMUP_S / 2 if quick else WARMUP_S, loaded))
    return results


def _pair(stats: dict[str, float]) -> str:
    return f"{fmt(stats['median'])} / {fmt(stats['p95'])}"


def render(results: list[dict[str, Any]]) -> str:
    rows = [
        [
            f"impromptu {r['size']}@30" + (" + testsrc2" if r.get("loaded") else ""),
            fmt(r["g2g_ms"]["median"]),
            fmt(r["g2g_ms"]["p95"]),
            str(r["count"]),
            str(r["rejected"]),
            fmt(r["clock_to_capture_ms"]["median"]),
            _pair(r["capture_to_receive_ms"]),
            _pair(r["receive_to_paint_ms"]),
            fmt(r["viewer_fps"]),
            fmt(r["cpu_pct"]["impromptu"], 0),
            fmt(r["cpu_pct"]["chromium"], 0),
            fmt(r["cpu_pct"]["clock"], 0),
            fmt(r["cpu_pct"]["foreign"], 0),
        ]
        for r in results
    ]
    rows.append(["Selkies 2.1 1920x1080@30", fmt(SELKIES_G2G_MS[0]), fmt(SELKIES_G2G_MS[1]), *["—"] * 10])
    rows.append(["x11vnc+noVNC 1920x1080@30", fmt(X11VNC_G2G_MS[0]), fmt(X11VNC_G2G_MS[1]), *["—"] * 10])
    return table(
        "Glass-to-glass latency through Chromium (ms, loopback)",
        [
            "stream",
            "median",
            "p95",
            "count",
            "rejected",
            "clock→grab",
            "grab→recv",
            "recv→paint",
            "fps",
            "impromptu %",
            "chromium %",
            "clock %",
            "other %",
        ],
        rows,
        [
            "median/p95: page's clock when the decoded picture is painted on the canvas - the clock the bar code "
            "shows (drawn ≤ ~1 ms before);",
            "clock→grab: age of the clock shown when the desktop grabbed the picture (the redraw period), median;",
            "grab→recv: capture timestamp → last fragment in the page (grab, encode, send), median / p95; "
            "recv→paint: → painted (reassemble, decode, draw);",
            "rejected: pictures whose two bar-code rows disagree. fps: pictures painted per second.",
            "CPU (% of one core) during the window: the desktop process, all Chromium processes, the bar-code "
            "clock's drawing thread (in the benchmark process),",
            "and every other process on the machine (other %: above ~10 the figures are suspect).",
        ],
    )
