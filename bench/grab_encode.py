"""Grab and encode, in this process: X11ScreenSource.grab() and Encoder.encode() on a testsrc2 screen.

Frames are taken at 30 per second, like the desktop does, while ffplay plays testsrc2 on the screen, so every
frame holds one new picture and the bytes per frame are what a viewer receives; a keyframe is forced every
``KEY_EVERY`` frames to measure its size. On this 2-core machine ffplay takes most of a core, so these figures
include contention; the "quiet" figures are taken without it (grab alone before ffplay starts; conversion and
encode of the last ``QUIET_FRAMES`` saved pictures after it stopped), to tell cost from contention.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np

from bench.common import ffplay_testsrc2, fmt, log, median, p95, running, size_name, table
from impromptu.capture.x11 import X11ScreenSource
from impromptu.display import Xvfb
from impromptu.encode.encoder import Encoder

FPS = 30
WARMUP_FRAMES = 5
KEY_EVERY = 50
QUIET_FRAMES = 20
APP_SETTLE_S = 1.5


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": median(values), "p95": p95(values)}


def _paced(frames: int) -> Any:
    """Yields 0…frames-1 at 30 per second."""
    next_at = time.monotonic()
    for i in range(frames):
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at += 1 / FPS
        yield i


def quiet_grabs(display: str, frames: int) -> list[float]:
    """Grab alone, at 30 per second, on a screen where nothing runs: the cost of the grab itself."""
    source = X11ScreenSource(display)
    try:
        times = []
        for _ in _paced(frames):
            t0 = time.perf_counter()
            source.grab()
            times.append((time.perf_counter() - t0) * 1000)
        return times
    finally:
        source.close()


def loaded_grab_and_encode(display: str, frames: int) -> tuple[dict[str, Any], list[bytes]]:
    """The desktop's loop on a moving screen; also returns the last pictures, for the quiet pass."""
    source = X11ScreenSource(display)
    encoder = Encoder(*source.size, fps=FPS)
    saved: list[bytes] = []
    try:
        grab_ms: list[float] = []
        encode_ms: list[float] = []
        delta_bytes: list[int] = []
        key_bytes: list[int] = []
        for n in _paced(WARMUP_FRAMES + frames):
            i = n - WARMUP_FRAMES
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
            if i >= frames - QUIET_FRAMES:
                saved.append(bytes(frame.data))
    finally:
        encoder.close()
        source.close()
    return {
        "codec": encoder.codec,
        "encoder": encoder.encoder,
        "grab_ms": _stats(grab_ms),
        "encode_ms": _stats(encode_ms),
        "delta_bytes_median": median(delta_bytes),
        "keyframe_bytes_median": median(key_bytes),
        "keyframes": len(key_bytes),
        "mbps_at_30fps": median(delta_bytes) * 8 * FPS / 1e6 if delta_bytes else None,
    }, saved


def _converter(width: int, height: int) -> tuple[Callable[[bytes], object], str]:
    """The BGRA→I420 step Encoder.encode uses (impromptu.encode.convert), or swscale where that is missing."""
    try:
        convert: Any = importlib.import_module("impromptu.encode.convert")
    except ImportError:
        convert = None
    if convert is not None and hasattr(convert, "I420Converter"):
        converter = convert.I420Converter(width, height)
        name = "swscale (fallback)" if getattr(convert, "FALLBACK_REASON", None) else "OpenCV"
        return converter.convert, name

    def swscale(picture: bytes) -> object:
        pixels = np.frombuffer(picture, dtype=np.uint8).reshape(height, width, 4)
        return av.VideoFrame.from_ndarray(pixels, format="bgra").reformat(format="yuv420p")

    return swscale, "swscale"


def quiet_encode(size: tuple[int, int], pictures: list[bytes]) -> dict[str, Any]:
    """Encoder.encode, and the BGRA→I420 conversion alone (as Encoder.encode does it), on a quiet machine."""
    width, height = size
    convert, converter_name = _converter(width, height)
    encoder = Encoder(width, height, fps=FPS)
    try:
        encoder.encode(pictures[0], 0, True)  # the keyframe, not counted
        encode_ms, convert_ms = [], []
        for i, picture in enumerate(pictures[1:], start=1):
            t0 = time.perf_counter()
            encoder.encode(picture, i * 1_000_000 // FPS, False)
            t1 = time.perf_counter()
            convert(picture)
            t2 = time.perf_counter()
            encode_ms.append((t1 - t0) * 1000)
            convert_ms.append((t2 - t1) * 1000)
    finally:
        encoder.close()
    return {
        "quiet_encode_ms": _stats(encode_ms),
        "quiet_convert_ms": _stats(convert_ms),
        "converter": converter_name,
    }


def measure(size: tuple[int, int], frames: int) -> dict[str, Any]:
    with Xvfb(size) as xvfb:
        quiet = quiet_grabs(xvfb.name, max(30, frames // 3))
        with running(ffplay_testsrc2(size), env=xvfb.env()) as app:
            time.sleep(APP_SETTLE_S)  # ffplay maps its window and starts drawing
            if app.poll() is not None:
                raise RuntimeError(f"ffplay exited with status {app.returncode} on {xvfb.name}")
            loaded, pictures = loaded_grab_and_encode(xvfb.name, frames)
    return {
        "size": size_name(size),
        "frames": frames,
        **loaded,
        "quiet_grab_ms": _stats(quiet),
        **quiet_encode((size[0] & ~1, size[1] & ~1), pictures),
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
            fmt(r["quiet_grab_ms"]["median"], 2),
            fmt(r["quiet_encode_ms"]["median"], 2),
            fmt(r["quiet_convert_ms"]["median"], 2),
        ]
        for r in results
    ]
    codec = results[0]["codec"] if results else "?"
    converter = results[0]["converter"] if results else "?"
    frames = results[0]["frames"] if results else 0
    headers = ["size", "grab ms", "p95", "conv+enc ms", "p95", "bytes/frame", "keyframe B", "Mbit/s"]
    headers += ["quiet: grab", "conv+enc", "conv"]
    return table(
        "Grab and encode (in process, testsrc2 at 30 fps)",
        headers,
        rows,
        [
            f"{frames} frames per size after {WARMUP_FRAMES} warm-up, paced at 30 fps like the desktop, while ffplay "
            "plays testsrc2 full screen;",
            f"grab: X11ScreenSource.grab (mss XShmGetImage); conv+enc: Encoder.encode (BGRA→I420 with {converter}, "
            f"then PyAV {codec});",
            f"bytes/frame: median of delta frames; keyframe B: median of the keyframes forced every {KEY_EVERY} "
            "frames; Mbit/s = bytes/frame * 30.",
            "quiet (medians, no ffplay running): grab before ffplay starts; conv+enc, and the BGRA→I420 step alone, "
            f"on the last {QUIET_FRAMES} pictures afterwards.",
        ],
    )
