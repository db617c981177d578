"""What a peer connection's transports know about the path, read from aioice and aiortc's SCTP association.

aiortc's ``getStats()`` covers only RTP senders and receivers: a connection that carries only DataChannels gets
nothing from it. So the desktop reads the figures where they live (docs/protocol.md §10):

**The ICE pair** is aioice's nominated ``CandidatePair`` (``Connection._nominated``): its local and remote candidate.
aioice does not measure round trips, so this module times them itself: ``stun.Transaction.run`` is wrapped to note,
on the ``StunProtocol`` that sent it, how long a transaction that needed no retransmission took — the connectivity
check that nominated the pair, then aioice's consent checks (RFC 7675, every 4–6 s). A transaction that was
retransmitted is not a round trip (it includes the 500 ms retransmission timer), so it is left out. Cost: one
``perf_counter`` pair per STUN transaction, a few per viewer and minute.

**The SCTP association** (``RTCSctpTransport``): ``cwnd``, ``flight_size``, ``rto`` and ``srtt`` are its own
attributes. Losses are counted by wrapping ``RTCSctpTransport._maybe_abandon``, which aiortc calls exactly when it
judges a sent chunk lost (struck by three SACKs that miss it, or its retransmission timer expired): the chunk is
then retransmitted, or — on the ``video`` channel, which never retransmits — abandoned. Both are counted; a chunk
already abandoned with its message is not counted again. The wrapper runs only on a loss, never per chunk sent.
Chunks sent are read from the association's TSN, which advances by one per chunk queued: no wrapper at all.
Installed for every association on import, like impromptu/rtc/sack.py.
"""

from __future__ import annotations

import time
from typing import Any

from aioice import stun
from aiortc import RTCPeerConnection
from aiortc.rtcsctptransport import DataChunk, RTCSctpTransport

__all__ = ["ice_figures", "sctp_totals"]

TSN_MODULO = 2**32


def ice_figures(pc: RTCPeerConnection) -> dict[str, Any] | None:
    """The nominated pair of ``pc``'s ICE connection as aioice has it — ``state``, ``local`` and ``remote``
    (``{type, protocol, address, port}``) and ``rtt_ms`` (the last clean STUN round trip on it, or ``None``) — or
    ``None`` while there is none."""
    try:
        connection = pc.sctp.transport.transport._connection  # type: ignore[union-attr]
        ice_state = str(pc.sctp.transport.transport.state)  # type: ignore[union-attr]
    except AttributeError:
        return None
    nominated = getattr(connection, "_nominated", None) or {}
    pair = nominated.get(1)
    if pair is None:
        return None
    rtt = getattr(pair.protocol, "_impromptu_rtt_ms", None)
    return {
        "state": ice_state,
        "local": _candidate(pair.local_candidate),
        "remote": _candidate(pair.remote_candidate),
        "rtt_ms": None if rtt is None else round(rtt, 2),
    }


def _candidate(candidate: Any) -> dict[str, Any]:
    return {
        "type": str(candidate.type),
        "protocol": str(candidate.transport).lower(),
        "address": str(candidate.host),
        "port": int(candidate.port),
    }


def sctp_totals(pc: RTCPeerConnection) -> dict[str, Any] | None:
    """The SCTP association's state now (``cwnd``, ``flight_size`` in bytes; ``rto_ms``, ``srtt_ms``) and its
    counters since it started (``chunks_sent``, ``retransmits``, ``abandoned``), or ``None`` without one."""
    sctp = pc.sctp
    if sctp is None:
        return None
    srtt = getattr(sctp, "_srtt", None)
    first = getattr(sctp, "_impromptu_first_tsn", None)
    local_tsn = int(getattr(sctp, "_local_tsn", 0))
    if first is None:
        first = sctp._impromptu_first_tsn = local_tsn  # type: ignore[attr-defined]
    queued = len(getattr(sctp, "_outbound_queue", ()))
    return {
        "cwnd": int(getattr(sctp, "_cwnd", 0)),
        "flight_size": int(getattr(sctp, "_flight_size", 0)),
        "rto_ms": round(float(getattr(sctp, "_rto", 0.0)) * 1000, 1),
        "srtt_ms": None if srtt is None else round(float(srtt) * 1000, 2),
        "chunks_sent": max(0, (local_tsn - first) % TSN_MODULO - queued),
        "retransmits": int(getattr(sctp, "_impromptu_retransmits", 0)),
        "abandoned": int(getattr(sctp, "_impromptu_abandoned", 0)),
    }


# ---- the wrappers (installed on import) ----

_run = stun.Transaction.run
_maybe_abandon = RTCSctpTransport._maybe_abandon


async def _timed_run(self: stun.Transaction) -> tuple[stun.Message, tuple[str, int]]:
    started = time.perf_counter()
    result = await _run(self)
    if getattr(self, "_Transaction__tries", 0) == 1:  # answered before any retransmission: a clean round trip
        protocol = getattr(self, "_Transaction__protocol", None)
        if protocol is not None:
            protocol._impromptu_rtt_ms = (time.perf_counter() - started) * 1000
    return result


def _counting_maybe_abandon(self: RTCSctpTransport, chunk: DataChunk) -> bool:
    already = chunk._abandoned
    abandoned = _maybe_abandon(self, chunk)
    if not already:
        if abandoned:
            self._impromptu_abandoned = getattr(self, "_impromptu_abandoned", 0) + 1  # type: ignore[attr-defined]
        else:
            self._impromptu_retransmits = getattr(self, "_impromptu_retransmits", 0) + 1  # type: ignore[attr-defined]
    return abandoned


stun.Transaction.run = _timed_run  # type: ignore[method-assign]
RTCSctpTransport._maybe_abandon = _counting_maybe_abandon  # type: ignore[method-assign]
