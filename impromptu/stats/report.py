"""The desktop's statistics as people and programs read them: ``impromptu status``'s text, and ``/metrics`` in
Prometheus's text format — both made from one ``stats.snapshot`` (docs/protocol.md §10).

Both read the snapshot defensively: a figure that is missing or not a number is shown as ``-`` (text) or left out
(Prometheus), never an error, so a desktop of another version still prints.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["VERDICTS", "format_status", "prometheus"]

VERDICTS = {
    "healthy": "healthy",
    "network": "the network path",
    "viewer": "this viewer's machine",
    "desktop": "the desktop machine",
}
"""Each verdict in plain words, as pages show it."""

_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _show(value: object, digits: int = 0) -> str:
    number = _number(value)
    if number is None:
        return "-"
    return f"{number:.{digits}f}"


def _mapping(value: object) -> Mapping[Any, Any]:
    return value if isinstance(value, Mapping) else {}


def _get(mapping: object, *path: str) -> object:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def format_status(snapshot: Mapping[str, Any], own_peer: str = "") -> str:
    """A few lines for a terminal: each surface's pipeline, then each viewer's connection and its verdict (the
    connection ``impromptu status`` itself makes is marked, not left out: it is a viewer like any other)."""
    lines = ["surface  capture ms  encode ms  fps  target  unchanged/s"]
    surfaces = _mapping(_get(snapshot, "desktop", "surfaces"))
    for number, surface in sorted(surfaces.items(), key=lambda item: str(item[0])):
        lines.append(
            f"{number!s:>7}  {_show(_get(surface, 'capture_ms'), 1):>10}  {_show(_get(surface, 'encode_ms'), 1):>9}"
            f"  {_show(_get(surface, 'fps_encoded')):>3}  {_show(_get(surface, 'target_fps')):>6}"
            f"  {_show(_get(surface, 'frames_unchanged')):>11}"
        )
    lines.append("")
    lines.append("viewer        role     rtt ms  kbit/s  fps  decode ms  dropped/s  verdict")
    for viewer in snapshot.get("viewers") or []:
        peer = str(_get(viewer, "peer") or "?")
        page = _get(viewer, "page_side")
        desk = _get(viewer, "desktop_side")
        rtt = _get(page, "pair", "rtt_ms")
        rtt = rtt if _number(rtt) is not None else _get(desk, "ice", "rtt_ms")
        kbps = _get(page, "pipeline", "kbps")
        if _number(kbps) is None:
            sent = _number(_get(desk, "bytes_sent"))
            kbps = None if sent is None else sent * 8 / 1000
        verdict = str(_get(viewer, "verdict") or "-")
        mark = " (this status)" if peer == own_peer else ""
        lines.append(
            f"{peer[:12]:<12}  {_get(viewer, 'role') or '-'!s:<7}  {_show(rtt):>6}  {_show(kbps):>6}"
            f"  {_show(_get(page, 'pipeline', 'fps_decoded')):>3}  {_show(_get(page, 'pipeline', 'decode_ms'), 1):>9}"
            f"  {_show(_get(page, 'pipeline', 'fps_dropped')):>9}  {VERDICTS.get(verdict, verdict)}{mark}"
        )
        reasons = _get(viewer, "reasons")
        for reason in reasons if isinstance(reasons, list) else []:
            lines.append(f"{'':14}- {str(reason)[:200]}")
    return "\n".join(lines)


def prometheus(snapshot: Mapping[str, Any]) -> str:
    """``/metrics``: every number of the snapshot as a gauge — ``impromptu_surface_*{surface}``,
    ``impromptu_viewer_desktop_*{peer,role}`` (the desktop's side of each connection),
    ``impromptu_viewer_page_*{peer,role}`` (what the page reported) — and ``impromptu_viewer_verdict{peer,role,
    verdict}`` 1 for each connection's current verdict."""
    samples: dict[str, list[str]] = {}

    def add(name: str, labels: dict[str, str], value: float) -> None:
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        samples.setdefault(name, []).append(f"{name}{{{text}}} {value:g}")

    for number, surface in _mapping(_get(snapshot, "desktop", "surfaces")).items():
        for path, value in _numbers(surface):
            add(f"impromptu_surface_{path}", {"surface": str(number)}, value)
    for viewer in snapshot.get("viewers") or []:
        labels = {"peer": str(_get(viewer, "peer") or ""), "role": str(_get(viewer, "role") or "")}
        for side, key in (("desktop", "desktop_side"), ("page", "page_side")):
            for path, value in _numbers(_get(viewer, key)):
                add(f"impromptu_viewer_{side}_{path}", labels, value)
        verdict = _get(viewer, "verdict")
        if isinstance(verdict, str):
            add("impromptu_viewer_verdict", {**labels, "verdict": verdict}, 1)
    out = []
    for name in sorted(samples):
        out.append(f"# TYPE {name} gauge")
        out.extend(samples[name])
    return "\n".join(out) + "\n"


def _numbers(value: object, prefix: str = "") -> Iterator[tuple[str, float]]:
    """``(path, number)`` for every number in nested mappings, paths joined with ``_`` (lists are left out)."""
    if not isinstance(value, Mapping):
        return
    for key, item in value.items():
        path = _NAME.sub("_", f"{prefix}{key}")
        number = _number(item)
        if number is not None:
            yield path, number
        elif isinstance(item, Mapping):
            yield from _numbers(item, f"{path}_")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
