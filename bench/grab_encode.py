"""Grab and encode, in this process: X11ScreenSource.grab() and Encoder.encode() on a testsrc2 screen.

Frames are taken at 30 per second, like the desktop does, so every frame holds one new testsrc2 picture and the
bytes per frame are what a viewer receives. A keyframe is forced every ``KEY_EVERY`` frames to measure its size.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import ffplay_testsrc2, fmt, log, median, p95, running, size_name, table
from impromptu.capture.x11 import X11ScreenSource
from impromptu.display import Xvfb
from impromptu.encode.encoder import Encoder

FPS = 30
WARMUP_FRAMES = 5
KEY_EVERY = 50
APP_SETTLE_S = 1.5


def measure(size: tuple[int, int], frames: int) -> dict[str, Any]:
    with Xvfb(size) as xvfb, running(ffplay_testsrc2(size), env=xvfb.env()) as app:
        time.sleep(APP_SETTLE_S)  # ffplay maps its window and starts drawing
        if app.poll() is not None:
            raise RuntimeError(f"ffplay exited with status {app.returncode} on {xvfb.name}")
        source = X11ScreenSource(xvfb.name)
        encoder = Encoder(*source.size, fps=FPS)
        try:
            grab_ms: list[float] = []
            encode_ms: list[float] = []
            delta_bytes: list[int] = []
            key_bytes: list[int] = []
            next_at = time.monotonic()
            for i in range(-WARMUP_FRAMES, frames):
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += 1 / FPS
                t0 = time.perf_counter()
                frame = source.grab()
                t1 = time.perf_counter()
                data, keyframe = encoder.encode(frame.data, frame.capture_us, i % KEY_EVERY == 0)
                t2 = time.perf_counter()
                if i < 0:
                    continue
                grab_ms.append((t1 - t0) * 1000)
                encode_ms.append((t2 - t1) * 1000)
                (key_bytes if keyframe else delta_bytes).append(len(data))
        finally:
            encoder.close()
            source.close()
    return {
        "size": size_name(size),
        "frames": frames,
        "codec": encoder.codec,
        "encoder": encoder.encoder,
        "grab_ms": {"median": median(grab_ms), "p95": p95(grab_ms)},
        "encode_ms": {"median": median(encode_ms), "p95": p95(encode_ms)},
        "delta_bytes_median": median(delta_bytes),
        "keyframe_bytes_median": median(key_bytes),
        "keyframes": len(key_bytes),
        "mbps_at_30fps": median(delta_bytes) * 8 * FPS / 1e6 if delta_bytes else None,
    }


def run(sizes: tuple[tuple[int, int], ...], quick: bool) -> list[dict[str, Any]]:
    frames = 40 if quick else 150
    results = []
    for size in sizes:
        log(f"grab/encode {size_name(size)}: {frames} frames of testsrc2")
        results.append(measure(size, frames))
    return results


def render(results: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["size"],
            fmt(r["grab_ms"]["median"], 2),
            fmt(r["grab_ms"]["p95"], 2),
            fmt(r["encode_ms"]["median"], 2),
            fmt(r["encode_ms"]["p95"], 2),
            fmt(r["delta_bytes_median"], 0),
            fmt(r["keyframe_bytes_median"], 0),
            fmt(r["mbps_at_30fps"], 2),
        ]
        for r in results
    ]
    codec = results[0]["codec"] if results else "?"
    frames = results[0]["frames"] if results else 0
    return table(
        "Grab and encode (in process, testsrc2 at 30 fps)",
        ["size", "grab ms", "p95", "conv+enc ms", "p95", "bytes/frame", "keyframe B", "Mbit/s"],
        rows,
        [
            f"{frames} frames per size after {WARMUP_FRAMES} warm-up; mss XShmGetImage; PyAV {codec}, BGRA→I420 "
            "included in conv+enc;",
            f"bytes/frame: median of delta frames; keyframe B: median of the keyframes forced every {KEY_EVERY} "
            "frames; Mbit/s = bytes/frame × 30.",
        ],
    )
