"""A user-space UDP impairment relay (the kernel's netem is not available on the test machines), and the way to
route a real Chromium page's WebRTC connection through it without touching impromptu's code.

``ImpairRelay`` is one UDP socket on 127.0.0.1: datagrams from its ``target`` go to the client (the last other
address that sent to it), datagrams from anyone else go to the target. Each direction gets its own one-way delay
and random loss (seeded). One socket both ways matters for ICE: both ends see the relay at the same address, the
one written into the other's candidates, so their STUN checks, DTLS and SCTP all go through it and nowhere else.

Delay is a heap of due times served by one thread (no sleep per packet); a direction's due times never decrease,
so datagrams keep their order and boundaries.

``PageRouting`` makes a page's peer connections go through relays: an init script rewrites the desktop's loopback
host candidates in the offer to a relay made for that port (asked from Python through ``page.expose_function``),
and the page's own loopback host candidates in the answer to the same relay. The page checks the offer's MAC
before it calls ``setRemoteDescription`` and MACs the answer it reads from ``localDescription`` — both after the
rewrite here — so the rewriting is invisible to impromptu's checks.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

Address = tuple[str, int]

TO_TARGET = "to_target"
TO_CLIENT = "to_client"
DIRECTIONS = (TO_TARGET, TO_CLIENT)

# Datagrams read per wake-up before the due ones are sent (keeps delays exact under a burst).
_BATCH = 256
_MAX_DATAGRAM = 65_535


@dataclass
class Counts:
    """Per direction (``TO_TARGET``, ``TO_CLIENT``): datagrams received, passed on, and dropped (for loss, for a
    full queue, with nowhere to go, or failing to send)."""

    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    passed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    lost: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    overflow: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    unroutable: int = 0
    send_errors: int = 0


class ImpairRelay:
    """A UDP relay on 127.0.0.1 between one client and ``target``, with a one-way delay (ms) and a loss fraction
    per direction. Use as a context manager; ``port`` is where to send."""

    def __init__(
        self,
        target: Address,
        *,
        delay_ms: float = 0.0,
        loss: float = 0.0,
        back_delay_ms: float | None = None,
        back_loss: float | None = None,
        seed: int = 0,
        max_queued: int = 20_000,
        host: str = "127.0.0.1",
    ) -> None:
        """``delay_ms``/``loss`` apply to each direction, unless ``back_delay_ms``/``back_loss`` give the target →
        client direction its own."""
        self.target: Address = (target[0], int(target[1]))
        self._lock = threading.Lock()
        self._delay_s = dict.fromkeys(DIRECTIONS, 0.0)
        self._loss = dict.fromkeys(DIRECTIONS, 0.0)
        self.impair(delay_ms=delay_ms, loss=loss, back_delay_ms=back_delay_ms, back_loss=back_loss)
        self._rng = {TO_TARGET: random.Random(seed), TO_CLIENT: random.Random(seed + 1)}
        self._max_queued = max_queued
        self.counts = Counts()
        self.client: Address | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)
        self._sock.bind((host, 0))
        self._sock.setblocking(False)
        self.address: Address = self._sock.getsockname()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # (due, sequence, direction, datagram, destination); the sequence keeps equal due times in arrival order.
        self._queue: list[tuple[float, int, str, bytes, Address | None]] = []
        self._sequence = 0
        self._last_due = dict.fromkeys(DIRECTIONS, 0.0)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"impair-relay-{self.address[1]}", daemon=True)
        self._started = False
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.address[1]

    def impair(
        self,
        *,
        delay_ms: float = 0.0,
        loss: float = 0.0,
        back_delay_ms: float | None = None,
        back_loss: float | None = None,
    ) -> None:
        """Change the impairment; applies to datagrams received from now on (queued ones keep their due times,
        and never get overtaken)."""
        back_delay_ms = delay_ms if back_delay_ms is None else back_delay_ms
        back_loss = loss if back_loss is None else back_loss
        for value in (delay_ms, back_delay_ms):
            if value < 0:
                raise ValueError(f"delay must be ≥ 0 ms, not {value}")
        for value in (loss, back_loss):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"loss must be a fraction in [0, 1], not {value}")
        with self._lock:
            self._delay_s = {TO_TARGET: delay_ms / 1000, TO_CLIENT: back_delay_ms / 1000}
            self._loss = {TO_TARGET: loss, TO_CLIENT: back_loss}

    # -- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> ImpairRelay:
        self._started = True
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread (datagrams still queued are dropped) and close the sockets. Idempotent."""
        self._stopping = True
        if self._started and self._thread.is_alive():
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                raise RuntimeError("the impairment relay's thread did not stop")
        for sock in (self._sock, self._wake_r, self._wake_w):
            sock.close()
        if self._error is not None:
            raise RuntimeError("the impairment relay's thread failed") from self._error

    def __enter__(self) -> ImpairRelay:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def passed(self, direction: str | None = None) -> int:
        return sum(self.counts.passed.values()) if direction is None else self.counts.passed[direction]

    def dropped(self, direction: str | None = None) -> int:
        return sum(self.counts.dropped.values()) if direction is None else self.counts.dropped[direction]

    def __repr__(self) -> str:
        return (
            f"ImpairRelay(127.0.0.1:{self.port} → {self.target[0]}:{self.target[1]}, client={self.client}, "
            f"passed={self.counts.passed}, dropped={self.counts.dropped})"
        )

    # -- the thread ---------------------------------------------------------------------------------------------

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping:
                timeout = None
                if self._queue:
                    timeout = max(0.0, self._queue[0][0] - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.fileobj is self._sock:
                        self._receive()
                    else:
                        with contextlib.suppress(BlockingIOError):
                            self._wake_r.recv(64)
                self._send_due()
        except BaseException as exc:  # reported by close()
            self._error = exc
        finally:
            sel.close()

    def _receive(self) -> None:
        for _ in range(_BATCH):
            try:
                data, source = self._sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # An ICMP error for an earlier send (nobody at the destination): ignore it, as a network would.
                continue
            now = time.monotonic()
            source = (source[0], source[1])
            if source == self.target:
                direction, destination = TO_CLIENT, self.client
            else:
                direction, destination = TO_TARGET, self.target
                self.client = source
            self.counts.received[direction] += 1
            if destination is None:
                self.counts.unroutable += 1
                self.counts.dropped[direction] += 1
                continue
            with self._lock:
                delay, loss = self._delay_s[direction], self._loss[direction]
            if loss and self._rng[direction].random() < loss:
                self.counts.lost[direction] += 1
                self.counts.dropped[direction] += 1
                continue
            if len(self._queue) >= self._max_queued:
                self.counts.overflow[direction] += 1
                self.counts.dropped[direction] += 1
                continue
            due = max(now + delay, self._last_due[direction])
            self._last_due[direction] = due
            self._sequence += 1
            # The client may change (a new peer connection): a datagram goes to the client of when it is sent.
            heapq.heappush(
                self._queue, (due, self._sequence, direction, data, None if direction == TO_CLIENT else destination)
            )

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._queue and self._queue[0][0] <= now:
            _, _, direction, data, destination = heapq.heappop(self._queue)
            if destination is None:
                destination = self.client
            if destination is None:
                self.counts.unroutable += 1
                self.counts.dropped[direction] += 1
                continue
            try:
                self._sock.sendto(data, destination)
            except OSError:
                self.counts.send_errors += 1
                self.counts.dropped[direction] += 1
                continue
            self.counts.passed[direction] += 1


# -- routing a page's peer connections through relays ---------------------------------------------------------------

# Rewrites, in the offer a page receives, each UDP host candidate on 127.0.0.1 to a relay's port (made for it by
# Python), and in the answer the page reads back from `localDescription` (which it MACs and sends), its own UDP
# host candidates on 127.0.0.1 to that same relay: both ends then only know the relay.
_INIT_SCRIPT = """((makeRelay) => {
  const proto = RTCPeerConnection.prototype;
  const state = (window.__impair = { pcs: [], relays: [], errors: [] });
  const relayOf = new WeakMap();
  const CANDIDATE = /^(a=candidate:\\S+ \\d+ udp \\d+ 127\\.0\\.0\\.1 )(\\d+)( typ host\\b.*)$/i;
  const rewrite = (sdp, portFor) =>
    sdp
      .split('\\r\\n')
      .map((line) => {
        const m = CANDIDATE.exec(line);
        if (!m) return line;
        const port = portFor(Number(m[2]));
        return port == null ? line : m[1] + port + m[3];
      })
      .join('\\r\\n');
  const nativeSetRemote = proto.setRemoteDescription;
  proto.setRemoteDescription = async function (description, ...rest) {
    if (description && description.type === 'offer' && typeof description.sdp === 'string') {
      const ports = [];
      for (const line of description.sdp.split('\\r\\n')) {
        const m = CANDIDATE.exec(line);
        if (m && !ports.includes(Number(m[2]))) ports.push(Number(m[2]));
      }
      const relays = new Map();
      try {
        for (const port of ports) relays.set(port, await window[makeRelay](port));
      } catch (err) {
        state.errors.push(String(err));
        throw err;
      }
      if (relays.size > 0) {
        relayOf.set(this, relays.values().next().value);
        state.pcs.push(this);
        state.relays.push(...relays.values());
      }
      description = { type: description.type, sdp: rewrite(description.sdp, (p) => relays.get(p)) };
    }
    return nativeSetRemote.call(this, description, ...rest);
  };
  // What the getter below does to an SDP of `pc`'s (for tests of this script).
  state.rewriteLocal = (pc, sdp) => rewrite(sdp, () => relayOf.get(pc));
  const nativeLocal = Object.getOwnPropertyDescriptor(proto, 'localDescription').get;
  Object.defineProperty(proto, 'localDescription', {
    configurable: true,
    enumerable: true,
    get() {
      const description = nativeLocal.call(this);
      const relay = relayOf.get(this);
      if (!description || relay === undefined) return description;
      return new RTCSessionDescription({ type: description.type, sdp: rewrite(description.sdp, () => relay) });
    },
  });
})(%s);"""


class PageRouting:
    """Routes the peer connections of pages through ``ImpairRelay``s, one per desktop port seen in an offer, all
    with the impairment last given to ``impair`` (which also applies to the relays already made). Close it (or use
    it as a context manager) after the pages are closed."""

    _FUNCTION = "__impairMakeRelay"

    def __init__(self, *, delay_ms: float = 0.0, loss: float = 0.0, seed: int = 0) -> None:
        self.relays: list[ImpairRelay] = []
        self._impairment: dict[str, float] = {"delay_ms": delay_ms, "loss": loss}
        self._seed = seed

    def attach(self, page: Any) -> None:
        """Before ``page.goto``: every offer this page receives from now on is routed through a relay."""
        page.expose_function(self._FUNCTION, self._make_relay)
        page.add_init_script(_INIT_SCRIPT % json.dumps(self._FUNCTION))

    def impair(self, *, delay_ms: float = 0.0, loss: float = 0.0) -> None:
        self._impairment = {"delay_ms": delay_ms, "loss": loss}
        for relay in self.relays:
            relay.impair(**self._impairment)

    def _make_relay(self, port: int) -> int:
        relay = ImpairRelay(("127.0.0.1", int(port)), seed=self._seed + 2 * len(self.relays), **self._impairment)
        self.relays.append(relay.start())
        return relay.port

    def close(self) -> None:
        for relay in self.relays:
            relay.close()

    def __enter__(self) -> PageRouting:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# The page's selected candidate pair, as its own getStats() reports it, for the last connection routed.
SELECTED_PAIR_JS = """async () => {
  const pc = window.__impair.pcs.at(-1);
  if (!pc) return null;
  const report = await pc.getStats();
  let pair = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
  });
  if (!pair) return null;
  const local = report.get(pair.localCandidateId);
  const remote = report.get(pair.remoteCandidateId);
  return {
    state: pair.state,
    rtt_ms: pair.currentRoundTripTime === undefined ? null : pair.currentRoundTripTime * 1000,
    bytes_sent: pair.bytesSent,
    bytes_received: pair.bytesReceived,
    local: {
      address: local.address,
      port: local.port,
      type: local.candidateType,
      related_port: local.relatedPort ?? null,
    },
    remote: { address: remote.address, port: remote.port, type: remote.candidateType },
  };
}"""
