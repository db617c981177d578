"""A relay's own connection upstream (docs/protocol.md §7): to the desktop, or to another relay, whichever the
signaling server assigns — and again whenever it reassigns.

The relay joins as ``role: relay`` and answers its upstream's offer like any viewer. A fresh offer on the same
socket (its upstream went away and the server moved it) replaces the connection; the relay's own viewers, which
hang off the same socket, stay. When the connection fails and no new one follows within ``REOFFER_GRACE_S``, or
none comes up within ``HANDSHAKE_TIMEOUT_S`` of joining (in both cases unless the server has said we wait for a
place, which it would then offer us), or the socket closes, the relay joins again on a new socket, after a
backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp

from impromptu.errors import ImpromptuError
from impromptu.link import ViewerLink
from impromptu.rtc.ice import IcePolicy
from impromptu.rtc.offers import UNAUTHORISED
from impromptu.rtc.viewer import DesktopConnection, Rejected

logger = logging.getLogger(__name__)

REOFFER_GRACE_S = 5.0
"""After the connection fails, how long to wait for the server to send a new offer on the same socket."""
HANDSHAKE_TIMEOUT_S = 15.0
"""From joining to an open connection (unless the server says we wait for a place): as long as a page gives it. An
upstream that never offers, or whose offer never connects, is not waited for forever."""
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
BACKOFF_JITTER = 0.2


def backoff_delay(failures: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before reconnection attempt number ``failures`` (0-based): doubling, capped, with ±20 % jitter
    (as the pages' ``backoffDelay``)."""
    base = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** max(0, failures))
    return float(base * (1 + BACKOFF_JITTER * (2 * rand() - 1)))


class Upstream:
    """Keeps a relay connected upstream until ``stop()``.

    ``on_video``/``on_control`` get what the current connection receives; ``on_signal`` the signaling messages
    meant for the relay's own side (``join``, ``answer``, ``leave``); ``on_open()`` fires when a connection's
    channels are both open, ``on_lost()`` when it ends (or is replaced), and ``on_socket()`` when the relay has a
    new signaling socket (the server forgot everything about the old one). ``failed`` is set when the first
    attempt fails in a way that retrying cannot fix — the server cannot be reached, the offer's MAC is wrong, the
    desktop refuses us — before the relay was ever connected.
    """

    def __init__(
        self,
        link: ViewerLink,
        ice: IcePolicy,
        *,
        on_video: Callable[[bytes], None],
        on_control: Callable[[dict[str, Any]], None],
        on_signal: Callable[[dict[str, Any]], None],
        on_open: Callable[[], None],
        on_lost: Callable[[], None],
        on_socket: Callable[[], None],
        ssl_context: ssl.SSLContext | aiohttp.Fingerprint | None = None,
    ) -> None:
        self.link = link
        self._ice = ice
        self._on_video = on_video
        self._on_control = on_control
        self._on_signal = on_signal
        self._on_open = on_open
        self._on_lost = on_lost
        self._on_socket = on_socket
        self._ssl = ssl_context
        self._conn: DesktopConnection | None = None
        self._open = False
        self._ever_open = False
        self._give_up = asyncio.Event()
        self._grace: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        self.connections = 0
        """Upstream connections opened so far."""

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def peer_id(self) -> str:
        """The relay's own peer id on its current signaling socket."""
        return self._conn.peer_id if self._conn is not None else ""

    @property
    def via_relay(self) -> bool:
        return self._conn is not None and self._conn.via_relay

    def start(self) -> None:
        if self._task is not None:
            raise ImpromptuError("an upstream can only be started once")
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Close the connection and the socket (idempotent)."""
        self._cancel_grace()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.failed.done():
            self.failed.cancel()

    def send_signal(self, message: dict[str, Any]) -> None:
        if self._conn is not None:
            self._conn.send_signal(message)

    def send_control(self, message: dict[str, Any]) -> None:
        if self._conn is not None and self._open:
            self._conn.send_control(message)

    async def _run(self) -> None:
        failures = 0
        while True:
            conn = DesktopConnection(
                self.link,
                self._ice,
                self._on_video,
                self._on_control,
                self._ssl,
                role="relay",
                follow_offers=True,
                on_signal=self._on_signal,
                on_open=self._opened,
                on_lost=self._lost,
            )
            self._conn = conn
            self._give_up.clear()
            opened_before = self.connections
            try:
                await conn.start()
                self._on_socket()
                self._arm_grace(HANDSHAKE_TIMEOUT_S)
                closed = asyncio.ensure_future(conn.closed.wait())
                give_up = asyncio.ensure_future(self._give_up.wait())
                try:
                    await asyncio.wait({closed, give_up}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closed.cancel()
                    give_up.cancel()
                if conn.error is not None:
                    raise conn.error
                logger.warning("upstream: no working connection came in time")
            except Exception as exc:
                if not self._ever_open and not (isinstance(exc, Rejected) and exc.reason != UNAUTHORISED):
                    # Before we were ever connected, this is most likely the link (a wrong key, a desktop that is
                    # not there): say so rather than retry for ever. A place that was full is worth another try.
                    error = exc if isinstance(exc, ImpromptuError) else ImpromptuError(f"upstream: {exc}")
                    self.failed.set_result(error)
                    return
                logger.warning("upstream: %s", exc)
            finally:
                self._cancel_grace()
                self._conn = None
                await conn.close()
                if self._open:
                    self._open = False
                    self._on_lost()
            failures = 0 if self.connections > opened_before else failures + 1
            delay = backoff_delay(failures)
            logger.warning("upstream: joining again in %.1f s", delay)
            await asyncio.sleep(delay)

    def _opened(self) -> None:
        self._cancel_grace()
        self._open = True
        self._ever_open = True
        self.connections += 1
        logger.info("upstream: connected%s", " through a relay" if self.via_relay else " to the desktop")
        self._on_open()

    def _lost(self) -> None:
        was_open, self._open = self._open, False
        if was_open:
            logger.info("upstream: connection lost")
            self._on_lost()
        self._arm_grace()

    def _arm_grace(self, delay: float = REOFFER_GRACE_S) -> None:
        self._cancel_grace()
        conn = self._conn
        offers = conn.offers if conn is not None else 0
        self._grace = asyncio.get_running_loop().call_later(delay, self._grace_over, conn, offers)

    def _grace_over(self, conn: DesktopConnection | None, offers: int) -> None:
        self._grace = None
        if conn is not self._conn or conn is None:
            return
        if conn.waiting:
            return  # the server knows we have no upstream (the desktop left, say) and will send an offer
        if conn.offers != offers:
            self._arm_grace()  # a new offer came and its connection is still being made: give it its time
        else:
            self._give_up.set()

    def _cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
