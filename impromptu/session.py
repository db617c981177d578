"""A sharing session: one display's capture → encode → hub → viewers, and their input back.

Start order: input sink, capture source and encoder (so the first viewer gets a stream config at once), the
worker (paused until someone watches), then the seat in the signaling room. Stop runs the other way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from impromptu.capture import open_screen_source
from impromptu.control import ControlFloor, ControlMode
from impromptu.encode import Encoder
from impromptu.encode.worker import EncodeWorker
from impromptu.errors import ImpromptuError
from impromptu.input import InputDispatcher, InputSink, open_input_sink
from impromptu.link import LinkKeys, Role
from impromptu.rtc import IcePolicy, ViewerPeer
from impromptu.signaling import DesktopAttachment, SignalingServer
from impromptu.stream.hub import Hub

logger = logging.getLogger(__name__)
T = TypeVar("T")

SURFACE = 0
MAX_PEERS = 32
"""Viewers plus offers awaiting an answer: joins beyond this are rejected before any resources are spent."""
ANSWER_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ShareOptions:
    fps: int = 30
    ice: IcePolicy = field(default_factory=IcePolicy)
    control: ControlMode = ControlMode.SHARED


async def _in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread of its own that cannot hold up exit.

    Opening an X connection blocks for as long as the server does not answer. ``asyncio.to_thread`` would run it
    in the default executor, which ``asyncio.run`` waits for at exit: a Ctrl-C would then hang on a dead server.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name=f"impromptu-open-{getattr(fn, '__name__', 'x')}", daemon=True).start()
    return await future


class ShareSession:
    """Shares the whole screen of ``display`` with every viewer that holds one of the link's keys: one encoder,
    its frames fanned out to every viewer; input from those the control floor allows."""

    def __init__(self, display: str, keys: LinkKeys, server: SignalingServer, options: ShareOptions) -> None:
        self.display = display
        self.keys = keys
        self._server = server
        self._options = options
        self._peers: dict[str, ViewerPeer] = {}
        self._roles: dict[str, Role] = {}
        self._joining: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._attachment: DesktopAttachment | None = None
        self._worker: EncodeWorker | None = None
        self._dispatcher: InputDispatcher | None = None
        self._sink: InputSink | None = None
        self._hub = Hub(self._request_keyframe, self._skipped)
        self._floor = ControlFloor(options.control)
        self._refused_input: set[str] = set()
        self.refused_input = 0
        """Input messages dropped because their viewer may not control (all viewers, since start)."""
        self._config: dict[str, Any] = {}
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        self._started = False
        self._stopped = False

    async def start(self) -> None:
        if self._started:
            raise ImpromptuError("a session can only be started once")
        self._started = True
        sink = await _in_daemon_thread(open_input_sink, self.display)
        try:
            source = await _in_daemon_thread(open_screen_source, self.display)
            try:
                width, height = source.size
                encoder = Encoder(width, height, self._options.fps)
            except BaseException:
                source.close()
                raise
        except BaseException:
            sink.close()
            raise
        self._sink = sink
        self._dispatcher = InputDispatcher(sink, width, height)
        self._config = {
            "type": "config",
            "surface": SURFACE,
            "codec": encoder.codec,
            "width": width,
            "height": height,
            "fps": self._options.fps,
        }
        loop = asyncio.get_running_loop()
        self._worker = EncodeWorker(
            source, encoder, SURFACE, self._hub.publish, self._worker_failed, loop, on_resize=self._resized
        )
        self._worker.start()
        self._attachment = self._server.attach_desktop(self.keys.room, self._signal)
        logger.info("sharing %s as %dx%d %s", self.display, width, height, encoder.codec)

    def describe(self) -> str:
        c = self._config
        return f"{c['width']}x{c['height']} {c['codec']} up to {c['fps']} fps"

    @property
    def viewers(self) -> int:
        return len(self._hub)

    async def stop(self) -> None:
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        if self._attachment is not None:
            self._attachment.detach()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(peer.close() for peer in list(self._peers.values())), return_exceptions=True)
        if self._worker is not None:
            await asyncio.to_thread(self._worker.stop)
        if self._sink is not None:
            self._sink.close()

    # Signaling -------------------------------------------------------------------------------------------

    def _signal(self, message: dict[str, Any]) -> None:
        if self._stopped:
            return
        kind, peer = message.get("type"), message.get("peer")
        if not isinstance(peer, str):
            return
        if kind == "join":
            if len(self._peers) + len(self._joining) >= MAX_PEERS and peer not in self._peers:
                logger.warning("viewer %s: rejected, %d viewers already", peer, MAX_PEERS)
                if self._attachment is not None:
                    self._attachment.send({"type": "reject", "peer": peer, "reason": "the desktop is full"})
                return
            self._joining.add(peer)
            self._spawn(self._offer(peer))
        elif kind == "answer":
            self._spawn(self._answer(peer, str(message.get("sdp")), str(message.get("mac"))))
        elif kind == "leave":
            viewer = self._peers.get(peer)
            if viewer is not None and not viewer.is_open:
                self._spawn(viewer.close())  # Gone before it connected; a connected peer stays P2P.

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("viewer task failed: %s", task.exception())

    async def _offer(self, peer_id: str) -> None:
        try:
            await self._make_offer(peer_id)
        finally:
            self._joining.discard(peer_id)  # also when it failed or was cancelled before that

    async def _make_offer(self, peer_id: str) -> None:
        old = self._peers.get(peer_id)
        if old is not None:
            await old.close()  # while still registered, so _viewer_closed forgets its role, floor and input
            self._peers.pop(peer_id, None)
        viewer = ViewerPeer(peer_id, self._options.ice, self._viewer_open, self._viewer_control, self._viewer_closed)
        self._peers[peer_id] = viewer
        self._joining.discard(peer_id)  # counted in _peers from here on
        sdp = await viewer.make_offer()
        if self._attachment is None or self._stopped:
            return
        mac = self.keys.offer_mac(peer_id, sdp)
        self._attachment.send({"type": "offer", "peer": peer_id, "sdp": sdp, "mac": mac})
        # An offer nobody answers (or that never connects) must not hold its sockets forever. Nor must this task
        # hold the viewer once it has connected or gone.
        try:
            await asyncio.wait_for(viewer.settled(), ANSWER_TIMEOUT_S)
        except TimeoutError:
            if self._peers.get(peer_id) is viewer and not viewer.is_open:
                logger.info("viewer %s: no connection within %.0f s; dropped", peer_id, ANSWER_TIMEOUT_S)
                await viewer.close()

    async def _answer(self, peer_id: str, sdp: str, mac: str) -> None:
        viewer = self._peers.get(peer_id)
        if viewer is None:
            return
        role = self.keys.answer_role(peer_id, sdp, mac)
        if role is None:
            logger.warning("viewer %s: answer failed its MAC check; rejected", peer_id)
            if self._attachment is not None:
                self._attachment.send({"type": "reject", "peer": peer_id, "reason": "not authorised"})
            await viewer.close()
            return
        self._roles[peer_id] = role
        await viewer.accept_answer(sdp)

    # Viewers ---------------------------------------------------------------------------------------------

    def _viewer_open(self, viewer: ViewerPeer) -> None:
        role = self._roles.get(viewer.id)
        if role is None or self._peers.get(viewer.id) is not viewer:
            return  # Superseded or closed meanwhile.
        logger.info("viewer %s connected (%s)", viewer.id, role.value)
        viewer.send_control(self._config)
        self._hub.add(viewer)
        assert self._worker is not None
        self._worker.set_active(True)
        self._send_presence()

    def _viewer_closed(self, viewer: ViewerPeer) -> None:
        changed = viewer.id in self._hub
        if self._peers.get(viewer.id) is viewer:
            del self._peers[viewer.id]
            self._roles.pop(viewer.id, None)
            self._refused_input.discard(viewer.id)
            changed = self._floor.leave(viewer.id) or changed
        self._hub.remove(viewer.id)
        if self._dispatcher is not None:
            self._dispatcher.release(viewer.id)
        if self._worker is not None and len(self._hub) == 0:
            self._worker.set_active(False)
        if changed:
            self._send_presence()
        if not self._stopped:
            self._spawn(viewer.close())  # idempotent; a failed connection still holds its sockets

    def _watching(self) -> dict[str, ViewerPeer]:
        """Connected viewers (with a verified role): those the hub sends video to."""
        return {pid: peer for pid, peer in self._peers.items() if pid in self._hub}

    def _send_presence(self) -> None:
        """Tell every viewer how many watch and who may control (docs/protocol.md §5 ``presence``)."""
        watching = self._watching()
        controllers = sum(1 for pid in watching if self._roles[pid] is Role.CONTROL)
        floor = self._floor
        for pid, peer in watching.items():
            peer.send_control(
                {
                    "type": "presence",
                    "you": pid,
                    "role": self._roles[pid].value,
                    "viewers": len(watching),
                    "controllers": controllers,
                    "mode": floor.mode.value,
                    "holder": floor.holder,
                    "requests": list(floor.requests),
                }
            )

    def _skipped(self, viewer_id: str, frames: int) -> None:
        viewer = self._peers.get(viewer_id)
        if viewer is not None:
            logger.info("viewer %s caught up after %d skipped frames", viewer_id, frames)
            viewer.send_control({"type": "stream.skipped", "surface": SURFACE, "frames": frames})

    def _viewer_control(self, viewer: ViewerPeer, message: dict[str, Any]) -> None:
        kind = message["type"]
        role = self._roles.get(viewer.id)
        if role is None or self._peers.get(viewer.id) is not viewer or viewer.id not in self._hub:
            return  # not (yet) watching: its channels are not both open, so it has not had a presence either
        if kind == "keyframe.request":
            if message.get("surface") == SURFACE:
                self._request_keyframe()
        elif kind.startswith("input."):
            assert self._dispatcher is not None
            if self._floor.may_input(viewer.id, role):
                self._dispatcher.handle(viewer.id, message)
            elif kind == "input.release":
                self._dispatcher.release(viewer.id)  # its own keys only, if it still holds any
            else:
                self.refused_input += 1
                if viewer.id not in self._refused_input:
                    self._refused_input.add(viewer.id)  # one line per viewer, not one per mouse move
                    why = "a view-only viewer" if role is Role.VIEW else "a viewer that does not hold control"
                    logger.warning("viewer %s: dropped %s (and later input) from %s", viewer.id, kind, why)
        elif kind in ("control.request", "control.release"):
            holder = self._floor.holder
            changed = (
                self._floor.request(viewer.id, role) if kind == "control.request" else self._floor.release(viewer.id)
            )
            if holder is not None and self._floor.holder != holder and self._dispatcher is not None:
                self._dispatcher.release(holder)  # what the old holder held must not stay pressed
            if changed:
                logger.info("viewer %s: %s; control: %s", viewer.id, kind, self._floor.holder or "nobody")
                self._refused_input.discard(viewer.id)
                self._send_presence()
        else:
            logger.warning("viewer %s: dropped unknown control message %r", viewer.id, kind[:40])

    def _resized(self, encoder: Encoder) -> None:
        """The shared surface changed size: viewers reconfigure their decoders, input maps to the new bounds."""
        self._config = {**self._config, "codec": encoder.codec, "width": encoder.width, "height": encoder.height}
        if self._dispatcher is not None:
            self._dispatcher.resize(encoder.width, encoder.height)
        for viewer in self._peers.values():
            if viewer.is_open:
                viewer.send_control(self._config)
        logger.info("sharing %s as %dx%d %s", self.display, encoder.width, encoder.height, encoder.codec)

    def _request_keyframe(self) -> None:
        if self._worker is not None:
            self._worker.request_keyframe()

    def _worker_failed(self, exc: BaseException) -> None:
        if not self.failed.done():
            self.failed.set_result(exc)
