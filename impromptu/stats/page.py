"""A page's own figures, as it sends them in ``stats`` (docs/protocol.md §10), checked and bounded.

``parse_stats`` returns a clean copy holding only the fields §10 lists — every figure a finite number or ``None``,
every string short — or raises ``ValueError`` naming what is wrong, and the message is dropped. ``pair`` and
``pipeline`` must be there (``null`` when not known yet); a figure inside them that is missing is taken as ``None``,
one that is present with the wrong type or out of range drops the message. A relay's ``downstream`` holds at most
``MAX_DOWNSTREAM`` entries, each with the ``page`` part its viewer sent it (whose own ``downstream``, if any, is not
kept: one hop below is what the desktop shows). The message itself is at most 64 KiB (``MAX_CONTROL_MESSAGE``,
checked as it arrives), and what is kept is bounded by these limits whatever it held.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MAX_DOWNSTREAM", "parse_stats"]

MAX_DOWNSTREAM = 64
"""Viewers one relay reports on."""
MAX_TEXT = 64
MAX_FIGURE = float(2**53)
"""Figures above this (JavaScript's largest safe integer, as pages bound them too) are out of range."""

PAIR_FIGURES = (
    "rtt_ms",
    "available_out_kbps",
    "bytes_sent",
    "bytes_received",
    "packets_sent",
    "packets_received",
    "requests_sent",
    "responses_received",
)
PIPELINE_FIGURES = (
    "fps_received",
    "fps_decoded",
    "fps_dropped",
    "decode_ms",
    "jitter_ms",
    "queue",
    "kbps",
    "keyframe_requests",
)
DOWNSTREAM_FIGURES = ("bytes", "frames_forwarded", "frames_skipped")
CANDIDATE_TEXTS = ("type", "protocol", "address")


def _figure(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where} is not a number")
    if not 0 <= value <= MAX_FIGURE:
        raise ValueError(f"{where} is out of range")
    return value


def _text(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ValueError(f"{where} is not a short string")
    return value


def _object(value: object, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{where} is not an object")
    return value


def _candidate(value: object, where: str) -> dict[str, Any] | None:
    raw = _object(value, where)
    if raw is None:
        return None
    out: dict[str, Any] = {name: _text(raw.get(name), f"{where}.{name}") for name in CANDIDATE_TEXTS}
    port = _figure(raw.get("port"), f"{where}.port")
    if port is not None and (port != int(port) or port > 65535):
        raise ValueError(f"{where}.port is not a port")
    out["port"] = None if port is None else int(port)
    return out


def _pair(value: object, where: str) -> dict[str, Any] | None:
    raw = _object(value, where)
    if raw is None:
        return None
    out: dict[str, Any] = {"state": _text(raw.get("state"), f"{where}.state")}
    out["local"] = _candidate(raw.get("local"), f"{where}.local")
    out["remote"] = _candidate(raw.get("remote"), f"{where}.remote")
    for name in PAIR_FIGURES:
        out[name] = _figure(raw.get(name), f"{where}.{name}")
    return out


def _pipeline(value: object, where: str) -> dict[str, Any] | None:
    raw = _object(value, where)
    if raw is None:
        return None
    return {name: _figure(raw.get(name), f"{where}.{name}") for name in PIPELINE_FIGURES}


def _page(raw: dict[str, Any], where: str) -> dict[str, Any]:
    return {
        "pair": _pair(raw.get("pair"), f"{where}pair"),
        "pipeline": _pipeline(raw.get("pipeline"), f"{where}pipeline"),
    }


def parse_stats(message: dict[str, Any]) -> dict[str, Any]:
    """The figures of one ``stats`` message, checked: ``{pair, pipeline}`` and, from a relay, ``downstream``."""
    for name in ("pair", "pipeline"):
        if name not in message:
            raise ValueError(f"{name} is missing")
    out = _page(message, "")
    downstream = message.get("downstream")
    if downstream is not None:
        if not isinstance(downstream, list) or len(downstream) > MAX_DOWNSTREAM:
            raise ValueError(f"downstream is not a list of at most {MAX_DOWNSTREAM}")
        entries = []
        for index, entry in enumerate(downstream):
            where = f"downstream[{index}]."
            if not isinstance(entry, dict):
                raise ValueError(f"{where[:-1]} is not an object")
            peer = _text(entry.get("peer"), f"{where}peer")
            if not peer:
                raise ValueError(f"{where}peer is missing")
            clean: dict[str, Any] = {"peer": peer, "pair": _pair(entry.get("pair"), f"{where}pair")}
            for name in DOWNSTREAM_FIGURES:
                clean[name] = _figure(entry.get(name), f"{where}{name}")
            page = _object(entry.get("page"), f"{where}page")
            clean["page"] = None if page is None else _page(page, f"{where}page.")
            entries.append(clean)
        out["downstream"] = entries
    return out
