"""The verdict on one viewer's connection, once a second: the rules of docs/diagnosis.md, as a pure function.

``diagnose(surfaces, desktop_side, page_side, previous)`` takes the desktop's figures for the surfaces the viewer
watches, the desktop's figures for this viewer's connection, the page's own (``None`` until it sends any), and the
last ``Diagnosis`` for this viewer, and returns the next one. The first rule that holds is this second's finding;
the verdict follows a finding only once it has held ``HOLD_S`` seconds in a row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["VERDICTS", "Diagnosis", "diagnose"]

VERDICTS = ("healthy", "network", "viewer", "desktop")

HOLD_S = 2
"""A finding becomes the verdict once it holds this many seconds in a row."""
# Rule 1: the desktop machine.
DESKTOP_FPS_FRACTION = 0.8
"""Encoding under this share of the target frame rate, while the screen keeps changing, is the desktop's fault."""
CHANGING_UNCHANGED_FRACTION = 0.2
"""The screen "keeps changing" while fewer than this share of the target's frame intervals went by unchanged."""
# Rule 2: the network path.
RTT_MAX_MS = 250.0
LOSS_MAX = 0.02
"""Share of the SCTP chunks sent in the last second that were lost (retransmitted, or abandoned)."""
LOSS_MIN_CHUNKS = 20
"""Fewer chunks than this in a second say nothing about loss (one lost chunk of three is not 33 % loss)."""
BACKPRESSURE_MIN_FRAMES = 1.0
"""Frames per second the desktop skipped because this viewer's channel was backed up (protocol.md §6)."""
# Rule 3: this viewer's machine.
QUEUE_MAX = 3
VIEWER_DROP_MIN_FRAMES = 2.0
VIEWER_DROP_FRACTION = 0.1
"""The page "decoded fewer than it received" when the difference is at least ``VIEWER_DROP_MIN_FRAMES`` a second and
this share of the frames received (a frame received at the end of a second is decoded in the next)."""


@dataclass(frozen=True)
class Diagnosis:
    verdict: str | None
    """One of ``VERDICTS``: what the page shows; ``None`` until a first finding has held ``HOLD_S`` seconds (no
    ``diagnosis`` is sent before)."""
    reasons: tuple[str, ...]
    """Short sentences naming the figures that led to ``verdict``."""
    finding: str = "healthy"
    """This second's finding (the verdict once it has held ``HOLD_S`` seconds)."""
    streak: int = 0
    """Seconds in a row that ``finding`` has held."""


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _get(mapping: object, *path: str) -> float | None:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return _num(mapping)


def _interval_ms(surfaces: Mapping[Any, Mapping[str, Any]]) -> float | None:
    """The frame interval ``F``: that of the fastest surface's target frame rate."""
    rates = [fps for s in surfaces.values() if (fps := _get(s, "target_fps")) is not None and fps > 0]
    return 1000 / max(rates) if rates else None


def desktop_rule(surfaces: Mapping[Any, Mapping[str, Any]]) -> list[str]:
    """Rule 1's reasons (empty: it does not hold)."""
    reasons = []
    for number, s in surfaces.items():
        target = _get(s, "target_fps")
        if target is None or target <= 0:
            continue
        interval = 1000 / target
        capture, encode = _get(s, "capture_ms"), _get(s, "encode_ms")
        if capture is not None and encode is not None and capture + encode > interval:
            reasons.append(
                f"surface {number}: capture + encode take {capture + encode:.0f} ms per frame, "
                f"over the {interval:.0f} ms frame interval"
            )
            continue
        fps, unchanged = _get(s, "fps_encoded"), _get(s, "frames_unchanged")
        if (
            fps is not None
            and unchanged is not None
            and fps < DESKTOP_FPS_FRACTION * target
            and unchanged < CHANGING_UNCHANGED_FRACTION * target
        ):
            reasons.append(
                f"surface {number}: encodes {fps:.0f} fps of its {target:.0f} while the screen keeps changing"
            )
    return reasons


def rtt_ms(desktop_side: Mapping[str, Any] | None, page_side: Mapping[str, Any] | None) -> float | None:
    """The round trip: the page's (measured every second or so) or else the desktop's (every 5 s)."""
    page = _get(page_side, "pair", "rtt_ms")
    return page if page is not None else _get(desktop_side, "ice", "rtt_ms")


def network_rule(desktop_side: Mapping[str, Any] | None, page_side: Mapping[str, Any] | None) -> list[str]:
    """Rule 2's reasons (empty: it does not hold)."""
    reasons = []
    rtt = rtt_ms(desktop_side, page_side)
    if rtt is not None and rtt >= RTT_MAX_MS:
        reasons.append(f"round trip {rtt:.0f} ms (≥ {RTT_MAX_MS:.0f} ms)")
    sent = _get(desktop_side, "sctp", "chunks_sent")
    lost = (_get(desktop_side, "sctp", "retransmits") or 0) + (_get(desktop_side, "sctp", "abandoned") or 0)
    if sent is not None and sent >= LOSS_MIN_CHUNKS and lost / sent >= LOSS_MAX:
        reasons.append(f"{100 * lost / sent:.1f} % of packets lost ({lost:.0f} of {sent:.0f} SCTP chunks in 1 s)")
    skipped = _get(desktop_side, "frames_dropped")
    if skipped is not None and skipped >= BACKPRESSURE_MIN_FRAMES:
        reasons.append(f"the path cannot carry the stream: {skipped:.0f} frames/s skipped as the channel backed up")
    return reasons


def viewer_rule(page_side: Mapping[str, Any] | None, interval: float | None) -> list[str]:
    """Rule 3's reasons (empty: it does not hold, or the page sent no figures)."""
    reasons = []
    decode = _get(page_side, "pipeline", "decode_ms")
    if decode is not None and interval is not None and decode > interval:
        reasons.append(f"decoding takes {decode:.0f} ms per frame, over the {interval:.0f} ms frame interval")
    queue = _get(page_side, "pipeline", "queue")
    if queue is not None and queue > QUEUE_MAX:
        reasons.append(f"{queue:.0f} frames wait in the decoder (more than {QUEUE_MAX})")
    received, decoded = _get(page_side, "pipeline", "fps_received"), _get(page_side, "pipeline", "fps_decoded")
    if received is not None and decoded is not None:
        missed = received - decoded
        if missed >= VIEWER_DROP_MIN_FRAMES and missed >= VIEWER_DROP_FRACTION * received:
            reasons.append(f"decoded {decoded:.0f} of the {received:.0f} frames it received whole in 1 s")
    return reasons


def healthy_summary(
    surfaces: Mapping[Any, Mapping[str, Any]],
    desktop_side: Mapping[str, Any] | None,
    page_side: Mapping[str, Any] | None,
) -> list[str]:
    parts = []
    rtt = rtt_ms(desktop_side, page_side)
    if rtt is not None:
        parts.append(f"round trip {rtt:.0f} ms")
    work = [
        c + e
        for s in surfaces.values()
        if (c := _get(s, "capture_ms")) is not None and (e := _get(s, "encode_ms")) is not None
    ]
    if work:
        parts.append(f"capture + encode {max(work):.0f} ms")
    decode = _get(page_side, "pipeline", "decode_ms")
    if decode is not None:
        parts.append(f"decode {decode:.0f} ms")
    return [", ".join(parts)] if parts else []


def findings(
    surfaces: Mapping[Any, Mapping[str, Any]],
    desktop_side: Mapping[str, Any] | None,
    page_side: Mapping[str, Any] | None,
) -> tuple[str, list[str]]:
    """This second's finding and its reasons: the first rule of docs/diagnosis.md that holds."""
    reasons = desktop_rule(surfaces)
    if reasons:
        return "desktop", reasons
    reasons = network_rule(desktop_side, page_side)
    if reasons:
        return "network", reasons
    reasons = viewer_rule(page_side, _interval_ms(surfaces))
    if reasons:
        return "viewer", reasons
    return "healthy", healthy_summary(surfaces, desktop_side, page_side)


def diagnose(
    surfaces: Mapping[Any, Mapping[str, Any]],
    desktop_side: Mapping[str, Any] | None,
    page_side: Mapping[str, Any] | None,
    previous: Diagnosis | None = None,
) -> Diagnosis:
    """The next verdict on one connection (see the module's docstring)."""
    finding, reasons = findings(surfaces, desktop_side, page_side)
    streak = previous.streak + 1 if previous is not None and previous.finding == finding else 1
    if streak >= HOLD_S:
        return Diagnosis(finding, tuple(reasons), finding, streak)
    if previous is None:
        return Diagnosis(None, (), finding, streak)
    return Diagnosis(previous.verdict, previous.reasons, finding, streak)
