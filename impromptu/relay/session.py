"""A relay session (docs/protocol.md §7): one connection upstream, and the relay's own viewers downstream, each
fed the upstream's ``video`` messages unchanged.

The relay speaks the desktop's side of signaling for its viewers (``join`` → an offer MACed with ``Kv``, ``answer``
checked against the keys its link holds, ``leave``) and a viewer's side for its own upstream. It says how many
viewers it will take (``capacity``) once its upstream connection is open and has sent a ``config``, and ``0`` when
that connection ends. It passes ``relayed`` envelopes up (sealed under a key derived from ``Kc``, they are nothing
it can read, make or check, whatever link it holds), reports which viewers it serves (``relay.viewers``), and
hands each viewer the ``presence`` it gets, made out to that viewer.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from impromptu import envelope
from impromptu.errors import ImpromptuError
from impromptu.link import ViewerLink
from impromptu.relay.forward import Forwarder, KeyframeRequests
from impromptu.relay.upstream import Upstream
from impromptu.relayed import MAX_REPORTED, parse_report
from impromptu.rtc import IcePolicy, ViewerOffers, ViewerPeer
from impromptu.stats.page import MAX_DOWNSTREAM, parse_stats

logger = logging.getLogger(__name__)

DEFAULT_MAX_VIEWERS = 8
MAX_VIEWERS = 64
"""The most a relay may offer in ``capacity`` (§7)."""
NEEDS_A_ROLE = frozenset({"control.hello", "control.request", "control.release"})
"""With every ``input.*``: what a viewer behind a relay may send only inside a ``relayed`` envelope."""
STATS_INTERVAL_S = 1.0
"""How often the relay passes its viewers' figures up."""

PASSED_DOWN = frozenset({"config", "stream.skipped", "surface.state"})
WAITING_NOTICE_S = 10.0
"""``impromptu relay`` says it is still waiting for the desktop after this long."""


@dataclass(frozen=True)
class RelayOptions:
    max_viewers: int = DEFAULT_MAX_VIEWERS
    ice: IcePolicy = field(default_factory=IcePolicy)
    """Used both ways: the addresses here are the ones the relay offers its viewers (``--bind``)."""
    ssl_context: Any = None
    """For an https upstream: an ``ssl.SSLContext`` or a pinned ``aiohttp.Fingerprint``; ``None`` verifies it."""

    def __post_init__(self) -> None:
        if not 0 <= self.max_viewers <= MAX_VIEWERS:
            raise ValueError(f"a relay serves 0 to {MAX_VIEWERS} viewers, not {self.max_viewers}")


def is_rename(before: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether ``config`` only renames the surface ``before`` configured (protocol.md §8; lib/protocol.js's)."""
    same = ("surface", "codec", "width", "height", "fps")
    return (
        all(before.get(k) == config.get(k) for k in same)
        and isinstance(config.get("title"), str)
        and config.get("title") != before.get("title")
    )


def _is_int(value: object, low: int, high: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_str(value: object, longest: int) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= longest


class RelaySession:
    """Relays the desktop behind ``link`` to at most ``options.max_viewers`` viewers of its own."""

    def __init__(self, link: ViewerLink, options: RelayOptions) -> None:
        self.link = link
        self._options = options
        loop = asyncio.get_running_loop()
        self._keyframes = KeyframeRequests(self._send_keyframe_request, lambda delay, fn: loop.call_later(delay, fn))
        self._forwarder = Forwarder(self._keyframes.request, self._skipped, self._keyframes.keyframe_seen)
        # The desktop's side of signaling for our own viewers: offers MACed with Kv, answers checked against the
        # keys our link holds. Its messages go up our own signaling socket (``_upstream``, made next).
        self._offers = ViewerOffers(
            options.ice,
            send_signal=lambda message: self._upstream.send_signal(message),
            offer_mac=link.offer_mac,
            answer_role=link.answer_role,
            capacity=options.max_viewers,
            full_reason="the relay is full",
            on_open=self._viewer_open,
            on_control=self._viewer_control,
            on_closed=self._viewer_closed,
        )
        self._upstream = Upstream(
            link,
            options.ice,
            on_video=self._forwarder.push,
            on_control=self._upstream_control,
            on_signal=self._offers.signal,
            on_open=self._upstream_open,
            on_lost=self._upstream_lost,
            on_socket=self._new_socket,
            ssl_context=options.ssl_context,
        )
        self._reported: dict[str, list[str]] = {}
        """Per viewer of ours that is itself a relay: the viewers it reported serving."""
        self._configs: dict[int, dict[str, Any]] = {}
        """The current upstream's ``config`` of each surface."""
        self._given: dict[int, dict[str, Any]] = {}
        """The last ``config`` of each surface our viewers were sent, whichever upstream it came from."""
        self._states: dict[int, dict[str, Any]] = {}
        """The last ``surface.state`` of each surface (§8), for viewers that join later."""
        self._presence: dict[str, Any] | None = None
        self._page_stats: dict[str, dict[str, Any]] = {}
        """Each viewer's latest ``stats``, checked (§10): passed up every second."""
        self._stats_timer: asyncio.TimerHandle | None = None
        self._skipped_totals: dict[str, int] = {}
        self._announced = False
        """Whether the current upstream connection has been announced with our capacity."""
        self._reported_up: list[str] | None = None
        self._dropped_from: set[tuple[str, str]] = set()
        self.ready = asyncio.Event()
        """Set once the relay is connected upstream and has had a stream ``config``: it is serving."""
        self._started = False
        self._stopped = False

    @property
    def failed(self) -> asyncio.Future[BaseException]:
        """Set when the relay could not connect upstream in the first place (a wrong link, say)."""
        return self._upstream.failed

    @property
    def viewers(self) -> int:
        """Viewers of ours receiving video."""
        return len(self._forwarder)

    @property
    def peer_id(self) -> str:
        """The relay's own peer id on its signaling socket."""
        return self._upstream.peer_id

    @property
    def via_relay(self) -> bool:
        """Whether our upstream is another relay rather than the desktop."""
        return self._upstream.via_relay

    async def start(self) -> None:
        if self._started:
            raise ImpromptuError("a relay session can only be started once")
        self._started = True
        self._upstream.start()
        self._stats_timer = asyncio.get_running_loop().call_later(STATS_INTERVAL_S, self._send_stats)

    async def stop(self) -> None:
        """Leave: the signaling socket closes first, so the server moves our viewers elsewhere at once."""
        if self._stopped:
            return
        self._stopped = True
        if self._stats_timer is not None:
            self._stats_timer.cancel()
        self._offers.halt()
        if self._started:
            await self._upstream.stop()
        self._keyframes.cancel()
        await self._offers.stop()

    async def __aenter__(self) -> RelaySession:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # Upstream --------------------------------------------------------------------------------------------

    def _new_socket(self) -> None:
        """A new signaling socket: the server has forgotten our old one, and the offers we made on it. Viewers
        whose connections are open stay until they close (their pages have been moved, or will come back)."""
        self._announced = False
        self._offers.drop_unconnected()

    def _upstream_open(self) -> None:
        # Another upstream: its frames and configs are its own. Viewers start again at its next keyframe, after
        # its config, which resets their reassembly (§7).
        self._forwarder.reset()
        self._keyframes.reset()
        self._configs.clear()
        self._states.clear()
        self._announced = False
        self._reported_up = None
        self._report_viewers()

    def _upstream_lost(self) -> None:
        self._keyframes.cancel()
        if self._announced:
            self._announced = False
            self._upstream.send_signal({"type": "capacity", "viewers": 0})

    def _upstream_control(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in PASSED_DOWN:
            surface = message.get("surface")
            if not _is_int(surface, 0, 0xFFFF):
                logger.warning("upstream: dropped a %s without a valid surface", kind)
                return
            if kind == "config":
                self._configure(surface, message)
                return
            elif kind == "surface.state":
                self._states[surface] = message  # a shared window paused or ended: viewers joining later hear it too
            for viewer in self._watching():
                viewer.send_control(message)
        elif kind == "diagnosis":
            # Addressed to one of our viewers (§10): passed on to it alone, without the address.
            peer = message.get("peer")
            target = self._offers.peers.get(peer) if isinstance(peer, str) else None
            if target is not None and target.id in self._forwarder:
                target.send_control({k: v for k, v in message.items() if k != "peer"})
        elif kind == "presence":
            self._presence = message
            for viewer in self._watching():
                viewer.send_control(self._presence_for(viewer.id))
        else:
            logger.debug("upstream: ignored a %r", kind[:40])

    def _configure(self, surface: int, config: dict[str, Any]) -> None:
        """Pass a ``config`` down. Pages restart a surface's decoding on a ``config`` unless only its ``title``
        changed (a renamed window, §8), so a rename keeps the stream as it is, and anything else on the same
        upstream is a new stream (a desktop behind it restarted, or resized): frame numbers start anywhere, and
        viewers start again at its next keyframe. A new upstream's first ``config`` that differs from what viewers
        have only by its title would look like a rename to them: they get it first with the old title, which
        restarts them, then as it is."""
        current = self._configs.get(surface)
        send = [config]
        if current is not None:
            if not is_rename(current, config):
                self._forwarder.reset_surface(surface)
        else:
            given = self._given.get(surface)
            if given is not None and is_rename(given, config):
                again = {k: v for k, v in config.items() if k != "title"}
                if "title" in given:
                    again["title"] = given["title"]
                send = [again, config]
        self._configs[surface] = self._given[surface] = config
        self._announce()
        for viewer in self._watching():
            for message in send:
                viewer.send_control(message)

    def _announce(self) -> None:
        if self._announced or not self._upstream.is_open:
            return
        self._announced = True
        self._upstream.send_signal({"type": "capacity", "viewers": self._options.max_viewers})
        if not self.ready.is_set():
            self.ready.set()
        logger.info("serving up to %d viewers", self._options.max_viewers)

    def _send_keyframe_request(self, surface: int) -> None:
        self._upstream.send_control({"type": "keyframe.request", "surface": surface})

    # Our viewers -----------------------------------------------------------------------------------------

    def _watching(self) -> list[ViewerPeer]:
        return [peer for pid, peer in self._offers.peers.items() if pid in self._forwarder]

    def _viewer_open(self, viewer: ViewerPeer) -> None:
        if self._offers.peers.get(viewer.id) is not viewer or viewer.id not in self._offers.roles or self._stopped:
            return
        logger.info("viewer %s connected", viewer.id)
        for config in self._configs.values():
            viewer.send_control(config)
        for state in self._states.values():
            if state.get("state") != "live":
                viewer.send_control(state)
        self._forwarder.add(viewer)
        for surface in self._configs:
            self._keyframes.request(surface)
        if self._presence is not None:
            viewer.send_control(self._presence_for(viewer.id))
        self._report_viewers()

    def _viewer_closed(self, viewer: ViewerPeer) -> None:
        if self._offers.forget(viewer):  # also releases its sockets
            self._reported.pop(viewer.id, None)
            self._dropped_from = {(pid, kind) for pid, kind in self._dropped_from if pid != viewer.id}
            self._forwarder.remove(viewer.id)
            self._page_stats.pop(viewer.id, None)
            logger.info("viewer %s left", viewer.id)
            self._report_viewers()

    def _send_stats(self) -> None:
        """Every second, pass our viewers' own figures up (docs/protocol.md §10), so the desktop sees both ends of
        every hop. A Python relay has no ``getStats()`` of its own: its pair and pipeline are unknown (null)."""
        if self._stopped:
            return
        self._stats_timer = asyncio.get_running_loop().call_later(STATS_INTERVAL_S, self._send_stats)
        if not self._upstream.is_open:
            return
        downstream = []
        totals: dict[str, int] = {}
        for v in self._watching()[:MAX_DOWNSTREAM]:
            totals[v.id] = self._forwarder.skipped(v.id)
            skipped = totals[v.id] - self._skipped_totals.get(v.id, totals[v.id])  # per second, as pages send it
            downstream.append(
                {"peer": v.id, "pair": None, "frames_skipped": skipped, "page": self._page_stats.get(v.id)}
            )
        self._skipped_totals = totals
        self._upstream.send_control({"type": "stats", "pair": None, "pipeline": None, "downstream": downstream})

    def _skipped(self, viewer_id: str, surface: int, frames: int) -> None:
        viewer = self._offers.peers.get(viewer_id)
        if viewer is not None:
            logger.info("viewer %s caught up after %d skipped frames", viewer_id, frames)
            viewer.send_control({"type": "stream.skipped", "surface": surface, "frames": frames})

    def _viewer_control(self, viewer: ViewerPeer, message: dict[str, Any]) -> None:
        if self._offers.peers.get(viewer.id) is not viewer or viewer.id not in self._forwarder:
            return  # not (yet) watching: its channels are not both open
        kind = message["type"]
        if kind == "keyframe.request":
            surface = message.get("surface")
            if _is_int(surface, 0, 0xFFFF):
                self._keyframes.request(surface)
            else:
                self._drop(viewer.id, kind, "a keyframe.request without a valid surface")
        elif kind == "relayed":
            sealed = self._envelope(viewer.id, message)
            if sealed is not None:
                self._upstream.send_control(sealed.message())
        elif kind == "relay.viewers":
            peers = parse_report(message)
            if peers is not None:
                self._reported[viewer.id] = [p for p in peers if p != viewer.id]
                self._report_viewers()
            else:
                self._drop(viewer.id, kind, "a malformed relay.viewers")
        elif kind == "stats":
            try:
                self._page_stats[viewer.id] = parse_stats(message)
            except ValueError as exc:
                self._drop(viewer.id, kind, f"malformed stats ({exc})")
        elif kind.startswith("input.") or kind in NEEDS_A_ROLE:
            self._drop(viewer.id, "bare", f"{kind[:40]} (and later input) sent outside a relayed envelope")
        else:
            self._drop(viewer.id, "unknown", f"unknown control message {kind[:40]!r} (and later unknown ones)")

    def _envelope(self, viewer_id: str, message: dict[str, Any]) -> envelope.Envelope | None:
        sealed = envelope.parse(message)
        if sealed is None:
            self._drop(viewer_id, "relayed", "a malformed relayed envelope")
            return None
        if sealed.sender != viewer_id and sealed.sender not in self._reported.get(viewer_id, ()):
            self._drop(viewer_id, "relayed-from", "a relayed envelope from a viewer it does not serve")
            return None
        return sealed

    def _drop(self, viewer_id: str, key: str, what: str) -> None:
        """One log line per viewer and kind of dropped message, not one per mouse move."""
        if (viewer_id, key) not in self._dropped_from:
            self._dropped_from.add((viewer_id, key))
            logger.warning("viewer %s: dropped %s", viewer_id, what)

    def _presence_for(self, viewer_id: str) -> dict[str, Any]:
        """The upstream's ``presence`` made out to one of our viewers (§7)."""
        assert self._presence is not None
        relayed = self._presence.get("relayed")
        roles = relayed if isinstance(relayed, dict) else {}
        role = roles.get(viewer_id)
        theirs = set(self._reported.get(viewer_id, ()))
        return {
            **self._presence,
            "you": viewer_id,
            "role": role if role in ("control", "view") else "view",
            "relayed": {peer: r for peer, r in roles.items() if peer in theirs},
        }

    def _report_viewers(self) -> None:
        """Tell upstream which viewers we serve, ours and theirs, when that changes."""
        if not self._upstream.is_open:
            return
        everyone: dict[str, None] = {}
        for viewer in self._watching():
            everyone[viewer.id] = None
            everyone.update(dict.fromkeys(self._reported.get(viewer.id, ())))
        peers = list(everyone)[:MAX_REPORTED]  # the desktop refuses longer reports
        if peers == self._reported_up or (self._reported_up is None and not peers):
            return
        self._reported_up = peers
        self._upstream.send_control({"type": "relay.viewers", "peers": peers})


async def run_relay(link: ViewerLink, options: RelayOptions) -> int:
    """``impromptu relay``: relay until SIGINT or SIGTERM, then leave cleanly. Returns the exit status."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    session = RelaySession(link, options)
    ready = asyncio.ensure_future(session.ready.wait())
    try:
        await session.start()
        waiters: set[asyncio.Future[Any]] = {stop, session.failed, ready}
        done, _ = await asyncio.wait(waiters, timeout=WAITING_NOTICE_S, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            # Most likely no desktop shares under this link (yet): its room is empty. Say so, once, and go on.
            print(f"impromptu: waiting for the desktop at {link.base_url} to share", file=sys.stderr, flush=True)
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not stop.done():
            if session.failed.done():
                raise ImpromptuError(str(session.failed.result()))
            print(
                f"impromptu: relaying {link.base_url} for up to {options.max_viewers} viewers",
                file=sys.stderr,
                flush=True,
            )
            await stop
        return 0
    finally:
        ready.cancel()
        await session.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
