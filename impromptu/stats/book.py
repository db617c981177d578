"""Every connection's figures from both ends, the verdict on each, and the snapshot that shows them all
(docs/protocol.md §10).

The session owns one ``StatsBook``. It hands it each viewer's ``stats`` (``page_stats``), and once a second the
desktop's side of every connection (``tick``), which the book turns into rates, judges (impromptu/stats/diagnosis.py)
and keeps until the next tick; ``snapshot`` is the ``stats.snapshot`` of protocol.md §10 without its ``type``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from impromptu.stats.collector import ViewerMeter
from impromptu.stats.diagnosis import Diagnosis, diagnose
from impromptu.stats.page import parse_stats

__all__ = ["ConnectionFigures", "StatsBook", "TransportPeer"]

logger = logging.getLogger(__name__)


class TransportPeer(Protocol):
    """What the book reads from a viewer's connection (``impromptu.rtc.ViewerPeer``)."""

    @property
    def bytes_sent(self) -> int: ...

    @property
    def buffered_amount(self) -> int: ...

    def ice_figures(self) -> dict[str, Any] | None: ...

    def sctp_totals(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class ConnectionFigures:
    """One watching viewer at a tick: its connection, role, and frames sent and skipped on all surfaces in all."""

    peer: TransportPeer
    role: str
    frames_sent: int
    frames_dropped: int


@dataclass
class _Row:
    role: str
    meter: ViewerMeter
    desktop_side: dict[str, Any] | None = None
    page_side: dict[str, Any] | None = None
    diagnosis: Diagnosis | None = None
    malformed: bool = False
    behind: dict[str, Diagnosis] = field(default_factory=dict)
    """For a relay: the verdict on each of its viewers' connections to it (from their figures it passes up)."""


class StatsBook:
    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}

    def _row(self, viewer_id: str, role: str) -> _Row:
        row = self._rows.get(viewer_id)
        if row is None:
            row = self._rows[viewer_id] = _Row(role, ViewerMeter())
        row.role = role
        return row

    def join(self, viewer_id: str, role: str) -> None:
        """A viewer is watching: it has a row from now on (its figures come with the next tick)."""
        self._row(viewer_id, role)

    def page_stats(self, viewer_id: str, role: str, message: Mapping[str, Any]) -> bool:
        """Keep this viewer's latest ``stats``; a malformed one is dropped, with one log line per viewer."""
        row = self._row(viewer_id, role)
        try:
            row.page_side = parse_stats(dict(message))
        except ValueError as exc:
            if not row.malformed:
                row.malformed = True
                logger.warning(
                    "viewer %s: dropped a malformed stats message (and will drop later ones): %s", viewer_id, exc
                )
            return False
        return True

    def desktop_side(self, viewer_id: str) -> dict[str, Any] | None:
        """The desktop's figures for this viewer's connection as of the last tick."""
        row = self._rows.get(viewer_id)
        return None if row is None else row.desktop_side

    def forget(self, viewer_id: str) -> None:
        self._rows.pop(viewer_id, None)

    def tick(
        self, surfaces: Mapping[str, Mapping[str, Any]], viewers: Mapping[str, ConnectionFigures]
    ) -> dict[str, Diagnosis]:
        """Once a second: each watching viewer's desktop side, and the verdict on its connection. Viewers not in
        ``viewers`` are forgotten."""
        for gone in self._rows.keys() - viewers.keys():
            del self._rows[gone]
        out = {}
        for viewer_id, figures in viewers.items():
            row = self._row(viewer_id, figures.role)
            row.desktop_side = self._desktop_side(row, figures)
            row.diagnosis = diagnose(surfaces, row.desktop_side, row.page_side, row.diagnosis)
            out[viewer_id] = row.diagnosis
            row.behind = self._judge_behind(surfaces, row)
        return out

    @staticmethod
    def _judge_behind(surfaces: Mapping[str, Mapping[str, Any]], row: _Row) -> dict[str, Diagnosis]:
        """A relay's viewers, judged from what their pages report (the hop's far end; the relay has no transport
        figures of its own to add): the desktop rule, the page's round trip, and its pipeline."""
        judged = {}
        for entry in (row.page_side or {}).get("downstream") or []:
            page = entry.get("page")
            if page is not None:
                peer = entry["peer"]
                judged[peer] = diagnose(surfaces, None, page, row.behind.get(peer))
        return judged

    def behind(self, relay_id: str) -> dict[str, Diagnosis]:
        """The verdicts on the connections of ``relay_id``'s viewers, by their peer ids, as of the last tick."""
        row = self._rows.get(relay_id)
        return dict(row.behind) if row is not None else {}

    @staticmethod
    def _desktop_side(row: _Row, figures: ConnectionFigures) -> dict[str, Any]:
        peer = figures.peer
        sctp = peer.sctp_totals()
        totals = {
            "bytes_sent": float(peer.bytes_sent),
            "frames_sent": float(figures.frames_sent),
            "frames_dropped": float(figures.frames_dropped),
        }
        if sctp is not None:
            for name in ("chunks_sent", "retransmits", "abandoned"):
                totals[name] = float(sctp[name])
        rates = row.meter.rates(totals)
        if sctp is not None:
            sctp = {**sctp, **{name: rates[name] for name in ("chunks_sent", "retransmits", "abandoned")}}
        return {
            "bytes_sent": rates["bytes_sent"],
            "bytes_sent_total": peer.bytes_sent,
            "buffered": peer.buffered_amount,
            "frames_sent": rates["frames_sent"],
            "frames_dropped": rates["frames_dropped"],
            "ice": peer.ice_figures(),
            "sctp": sctp,
        }

    def snapshot(self, surfaces: Mapping[str, Mapping[str, Any]], only: str | None = None) -> dict[str, Any]:
        """``{desktop: {surfaces}, viewers: [{peer, role, desktop_side, page_side, verdict, reasons}]}``; with
        ``only``, that viewer's row alone."""
        rows = []
        for viewer_id, row in self._rows.items():
            if only is not None and viewer_id != only:
                continue
            diagnosis = row.diagnosis
            rows.append(
                {
                    "peer": viewer_id,
                    "role": row.role,
                    "desktop_side": row.desktop_side,
                    "page_side": row.page_side,
                    "verdict": diagnosis.verdict if diagnosis is not None else None,
                    "reasons": list(diagnosis.reasons) if diagnosis is not None else [],
                }
            )
            for peer, behind in row.behind.items():
                if only is None:
                    rows.append(
                        {
                            "peer": peer,
                            "role": "relayed",
                            "via": viewer_id,
                            "desktop_side": None,
                            "page_side": next(
                                (e.get("page") for e in row.page_side["downstream"] if e["peer"] == peer), None
                            )
                            if row.page_side and row.page_side.get("downstream")
                            else None,
                            "verdict": behind.verdict,
                            "reasons": list(behind.reasons),
                        }
                    )
        return {"desktop": {"surfaces": {str(n): dict(s) for n, s in surfaces.items()}}, "viewers": rows}
