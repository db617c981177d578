"""The offering side of signaling (docs/protocol.md §4, §7): what the desktop and a relay both do with a viewer's
``join``, ``answer`` and ``leave`` before that viewer's connection opens."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from aiortc import RTCDataChannel

from impromptu.envelope import MAX_PEER_ID
from impromptu.link import Role
from impromptu.rtc.ice import IcePolicy
from impromptu.rtc.peer import ViewerPeer

logger = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 30.0
"""An offer that has not led to a connection by then is dropped, with its sockets."""


UNAUTHORISED = "not authorised"
"""The ``reject`` reason for an answer no key of ours made: the one a viewer should not retry."""


class ViewerOffers:
    """Offers a :class:`ViewerPeer` to each viewer that joins, and accepts its answer if its MAC proves a role.

    ``send_signal(message)`` sends an ``offer`` or a ``reject`` over signaling; ``offer_mac(peer, sdp)`` MACs an offer
    and ``answer_role(peer, sdp, mac)`` checks an answer, returning the role its key proves or ``None``. Joins
    beyond ``capacity`` viewers (connected or being offered) are rejected with ``full_reason``. ``on_open``,
    ``on_control``, ``on_closed`` and ``on_channel`` are each viewer's (see :class:`ViewerPeer`); the owner's
    ``on_closed`` calls :meth:`forget`.
    """

    def __init__(
        self,
        ice: IcePolicy,
        *,
        send_signal: Callable[[dict[str, Any]], None],
        offer_mac: Callable[[str, str], str],
        answer_role: Callable[[str, str, str], Role | None],
        capacity: int,
        full_reason: str,
        on_open: Callable[[ViewerPeer], None],
        on_control: Callable[[ViewerPeer, dict[str, Any]], None],
        on_closed: Callable[[ViewerPeer], None],
        on_channel: Callable[[ViewerPeer, RTCDataChannel], None] | None = None,
    ) -> None:
        self._ice = ice
        self._send_signal = send_signal
        self._offer_mac = offer_mac
        self._answer_role = answer_role
        self.capacity = capacity
        """Viewers plus offers awaiting an answer: joins beyond this are rejected before any resources are spent."""
        self._full_reason = full_reason
        self._on_open = on_open
        self._on_control = on_control
        self._on_closed = on_closed
        self._on_channel = on_channel
        self._peers: dict[str, ViewerPeer] = {}
        self._roles: dict[str, Role] = {}
        self._joining: set[str] = set()
        self._unclosed: set[ViewerPeer] = set()
        """Every viewer made whose ``close()`` has not yet been seen through: ``stop()`` closes those left."""
        self._tasks: set[asyncio.Task[None]] = set()
        """Offers and answers: ``stop()`` cancels them."""
        self._closing: set[asyncio.Task[None]] = set()
        """Closes: ``stop()`` waits for them. Cut short, aiortc's close leaves every later close of that connection
        waiting for ever."""
        self._halted = False

    @property
    def peers(self) -> Mapping[str, ViewerPeer]:
        """The current viewer for each peer id, connected or not."""
        return self._peers

    @property
    def roles(self) -> Mapping[str, Role]:
        """The role each viewer's answer proved: only those whose answer was accepted are here."""
        return self._roles

    @property
    def running(self) -> int:
        """Offer, answer and close tasks not yet done."""
        return len(self._tasks) + len(self._closing)

    def signal(self, message: dict[str, Any]) -> None:
        """A signaling message for the offering side; other types, and everything once halted, are ignored."""
        if self._halted:
            return
        kind, peer = message.get("type"), message.get("peer")
        if not isinstance(peer, str) or not 0 < len(peer) <= MAX_PEER_ID:
            return
        if kind == "join":
            current = self._peers.get(peer)
            if current is not None and current.is_open:
                # Peer ids are per signaling socket: a join for a connected one is the server seating us again (a
                # desktop back on a standalone server, §11), not a new page. Its connection needs no new offer.
                logger.info("viewer %s: already connected; ignored its join", peer)
                return
            if peer not in self._peers and len(self._peers) + len(self._joining) >= self.capacity:
                logger.warning("viewer %s: rejected, %d viewers already", peer, self.capacity)
                self._send_signal({"type": "reject", "peer": peer, "reason": self._full_reason})
                return
            self._joining.add(peer)
            self._spawn(self._offer(peer))
        elif kind == "answer":
            self._spawn(self._answer(peer, str(message.get("sdp")), str(message.get("mac"))))
        elif kind == "leave":
            viewer = self._peers.get(peer)
            if viewer is not None and not viewer.is_open:
                # Gone before it connected (a connected viewer stays P2P). Its place is free at once: the server
                # may send the join that takes it right behind this leave.
                self._drop(peer, viewer)

    def forget(self, viewer: ViewerPeer) -> bool:
        """``viewer`` has closed: release its sockets, and forget it and its role if it is still the current viewer
        for its id. Returns whether it was (if not, it had been superseded or dropped, and its owner forgot it
        then)."""
        if not self._halted:
            self._release(viewer)  # idempotent; a failed connection still holds its sockets
        if self._peers.get(viewer.id) is not viewer:
            return False
        del self._peers[viewer.id]
        self._roles.pop(viewer.id, None)
        return True

    def drop_unconnected(self) -> None:
        """Close every viewer that has not connected, without telling the owner's ``on_closed`` it was current:
        the signaling socket its offer went over is gone, and with it the server's memory of that offer."""
        for peer_id, viewer in list(self._peers.items()):
            if not viewer.is_open:
                self._drop(peer_id, viewer)

    def _drop(self, peer_id: str, viewer: ViewerPeer) -> None:
        """Close a viewer that never connected and forget it now, not once its close has run: the owner had
        nothing of it to clean up."""
        self._release(viewer)
        del self._peers[peer_id]
        self._roles.pop(peer_id, None)

    def halt(self) -> None:
        """Handle no more signaling and send no more offers (idempotent). ``stop()`` begins with this; an owner
        that must shut something else down first calls it earlier."""
        self._halted = True

    async def stop(self) -> None:
        """Halt, cancel every offer and answer, then close every viewer (idempotent)."""
        self.halt()
        for task in list(self._tasks):
            task.cancel()
        while self._tasks or self._closing:  # a cancelled offer may still have released its viewer
            await asyncio.gather(*self._tasks, *self._closing, return_exceptions=True)
        # Every viewer, not only the current ones: one that closed once halted has not been released.
        await asyncio.gather(*(viewer.close() for viewer in list(self._unclosed)), return_exceptions=True)
        self._unclosed.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _release(self, viewer: ViewerPeer) -> asyncio.Task[None]:
        """Close ``viewer`` in a task that ``stop()`` sees through rather than cancels."""
        task = asyncio.ensure_future(self._close(viewer))
        self._closing.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def _closed(self, viewer: ViewerPeer) -> None:
        """Close ``viewer`` and wait for it; cancelling the wait does not cut the close short."""
        await asyncio.shield(self._release(viewer))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._closing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("viewer task failed: %s", task.exception())

    async def _close(self, viewer: ViewerPeer) -> None:
        await viewer.close()
        self._unclosed.discard(viewer)

    async def _offer(self, peer_id: str) -> None:
        try:
            await self._make_offer(peer_id)
        finally:
            self._joining.discard(peer_id)  # also when it failed or was cancelled before that

    async def _make_offer(self, peer_id: str) -> None:
        old = self._peers.get(peer_id)
        if old is not None:
            await self._closed(old)  # while still registered, so its owner's on_closed forgets it
            self._peers.pop(peer_id, None)
        viewer = ViewerPeer(peer_id, self._ice, self._on_open, self._on_control, self._on_closed, self._on_channel)
        self._unclosed.add(viewer)
        self._peers[peer_id] = viewer
        self._joining.discard(peer_id)  # counted in _peers from here on
        sdp = await viewer.make_offer()
        if self._halted or self._peers.get(peer_id) is not viewer:
            await self._closed(viewer)
            return
        self._send_signal({"type": "offer", "peer": peer_id, "sdp": sdp, "mac": self._offer_mac(peer_id, sdp)})
        # An offer nobody answers (or that never connects) must not hold its sockets forever. Nor must this task
        # hold the viewer once it has connected or gone.
        try:
            await asyncio.wait_for(viewer.settled(), ANSWER_TIMEOUT_S)
        except TimeoutError:
            if self._peers.get(peer_id) is viewer and not viewer.is_open:
                logger.info("viewer %s: no connection within %.0f s; dropped", peer_id, ANSWER_TIMEOUT_S)
                await self._closed(viewer)

    async def _answer(self, peer_id: str, sdp: str, mac: str) -> None:
        viewer = self._peers.get(peer_id)
        if viewer is None or peer_id in self._roles:
            return  # not offered, or a second answer
        role = self._answer_role(peer_id, sdp, mac)
        if role is None:
            logger.warning("viewer %s: answer failed its MAC check; rejected", peer_id)
            self._send_signal({"type": "reject", "peer": peer_id, "reason": UNAUTHORISED})
            await self._closed(viewer)
            return
        self._roles[peer_id] = role
        try:
            await viewer.accept_answer(sdp)
        except Exception as exc:  # an SDP aiortc cannot use: that viewer only
            logger.warning("viewer %s: unusable answer (%s); dropped", peer_id, exc)
            await self._closed(viewer)
