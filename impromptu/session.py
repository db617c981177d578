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
from impromptu.relayed import RelayedViewers
from impromptu.rtc import IcePolicy, ViewerOffers, ViewerPeer
from impromptu.signaling import DesktopAttachment, SignalingServer
from impromptu.stream.hub import Hub

logger = logging.getLogger(__name__)
T = TypeVar("T")

SURFACE = 0
MAX_PEERS = 32
"""Viewers plus offers awaiting an answer: joins beyond this are rejected before any resources are spent."""


@dataclass(frozen=True)
class ShareOptions:
    fps: int = 30
    ice: IcePolicy = field(default_factory=IcePolicy)
    control: ControlMode = ControlMode.SHARED
    max_direct: int = MAX_PEERS
    """Viewers (relays included) the desktop serves itself; signaling sends later ones to relays."""


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
        self._offers = ViewerOffers(
            options.ice,
            send_signal=self._send_signal,
            offer_mac=keys.offer_mac,
            answer_role=keys.answer_role,
            capacity=MAX_PEERS,
            full_reason="the desktop is full",
            on_open=self._viewer_open,
            on_control=self._viewer_control,
            on_closed=self._viewer_closed,
        )
        self._attachment: DesktopAttachment | None = None
        self._worker: EncodeWorker | None = None
        self._dispatcher: InputDispatcher | None = None
        self._sink: InputSink | None = None
        self._hub = Hub(self._request_keyframe, self._skipped)
        self._floor = ControlFloor(options.control)
        self._relayed = RelayedViewers(keys)
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
        self._attachment = self._server.attach_desktop(
            self.keys.room, self._offers.signal, max_direct=min(MAX_PEERS, self._options.max_direct)
        )
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
        await self._offers.stop()
        if self._worker is not None:
            await asyncio.to_thread(self._worker.stop)
        if self._sink is not None:
            self._sink.close()

    def _send_signal(self, message: dict[str, Any]) -> None:
        if self._attachment is not None:
            self._attachment.send(message)

    # Viewers ---------------------------------------------------------------------------------------------

    def _viewer_open(self, viewer: ViewerPeer) -> None:
        role = self._offers.roles.get(viewer.id)
        if role is None or self._offers.peers.get(viewer.id) is not viewer:
            return  # Superseded or closed meanwhile.
        logger.info("viewer %s connected (%s)", viewer.id, role.value)
        viewer.send_control(self._config)
        self._hub.add(viewer)
        assert self._worker is not None
        self._worker.set_active(True)
        self._send_presence()

    def _viewer_closed(self, viewer: ViewerPeer) -> None:
        changed = viewer.id in self._hub
        if self._offers.forget(viewer):  # also releases its sockets
            self._refused_input.discard(viewer.id)
            changed = self._floor.leave(viewer.id) or changed
        self._hub.remove(viewer.id)
        if self._dispatcher is not None:
            self._dispatcher.release(viewer.id)
        behind = bool(self._relayed.roles(viewer.id))
        changed = self._forget_relayed(self._relayed.relay_closed(viewer.id)) or changed or behind
        if self._worker is not None and len(self._hub) == 0:
            self._worker.set_active(False)
        if changed:
            self._send_presence()

    def _watching(self) -> dict[str, ViewerPeer]:
        """Connected viewers (with a verified role): those the hub sends video to."""
        return {pid: peer for pid, peer in self._offers.peers.items() if pid in self._hub}

    def _send_presence(self) -> None:
        """Tell every viewer how many watch and who may control (docs/protocol.md §5 ``presence``)."""
        watching = self._watching()
        relayed, relayed_controllers = self._relayed.count()
        controllers = sum(1 for pid in watching if self._offers.roles[pid] is Role.CONTROL) + relayed_controllers
        floor = self._floor
        for pid, peer in watching.items():
            presence: dict[str, Any] = {
                "type": "presence",
                "you": pid,
                "role": self._offers.roles[pid].value,
                "viewers": len(watching) + relayed,
                "controllers": controllers,
                "mode": floor.mode.value,
                "holder": floor.holder,
                "requests": list(floor.requests),
            }
            behind = self._relayed.roles(pid)
            if behind:
                presence["relayed"] = behind  # a relay passes each of its viewers its own part (§7)
            peer.send_control(presence)

    def _skipped(self, viewer_id: str, frames: int) -> None:
        viewer = self._offers.peers.get(viewer_id)
        if viewer is not None:
            logger.info("viewer %s caught up after %d skipped frames", viewer_id, frames)
            viewer.send_control({"type": "stream.skipped", "surface": SURFACE, "frames": frames})

    def _viewer_control(self, viewer: ViewerPeer, message: dict[str, Any]) -> None:
        kind = message["type"]
        role = self._offers.roles.get(viewer.id)
        if role is None or self._offers.peers.get(viewer.id) is not viewer or viewer.id not in self._hub:
            return  # not (yet) watching: its channels are not both open, so it has not had a presence either
        if kind == "keyframe.request":
            if message.get("surface") == SURFACE:
                self._request_keyframe()
        elif kind == "relay.viewers":
            gone = self._relayed.report(viewer.id, message, direct=self._offers.peers.keys())
            if gone is not None:
                self._forget_relayed(gone)
                self._send_presence()
        elif kind == "relayed":
            relayed = self._relayed.open(viewer.id, message)
            if relayed is None:
                self.refused_input += 1
            else:
                if relayed.first:
                    self._send_presence()  # its role is known now: tell it (and its relay) so
                if relayed.message["type"] != "control.hello":
                    self._from_viewer(relayed.sender, Role.CONTROL, relayed.message)
        elif kind.startswith("input.") or kind in ("control.request", "control.release"):
            self._from_viewer(viewer.id, role, message)
        else:
            logger.warning("viewer %s: dropped unknown control message %r", viewer.id, kind[:40])

    def _from_viewer(self, sender: str, role: Role, message: dict[str, Any]) -> None:
        """Input or a control request from ``sender`` — a connected viewer, or one behind a relay whose envelope
        verified — with the role its key proved."""
        kind = message["type"]
        if kind.startswith("input."):
            assert self._dispatcher is not None
            if self._floor.may_input(sender, role):
                self._dispatcher.handle(sender, message)
            elif kind == "input.release":
                self._dispatcher.release(sender)  # its own keys only, if it still holds any
            else:
                self.refused_input += 1
                if sender not in self._refused_input:
                    self._refused_input.add(sender)  # one line per viewer, not one per mouse move
                    why = "a view-only viewer" if role is Role.VIEW else "a viewer that does not hold control"
                    logger.warning("viewer %s: dropped %s (and later input) from %s", sender, kind, why)
        else:
            holder = self._floor.holder
            changed = self._floor.request(sender, role) if kind == "control.request" else self._floor.release(sender)
            if holder is not None and self._floor.holder != holder and self._dispatcher is not None:
                self._dispatcher.release(holder)  # what the old holder held must not stay pressed
            if changed:
                logger.info("viewer %s: %s; control: %s", sender, kind, self._floor.holder or "nobody")
                self._refused_input.discard(sender)
                self._send_presence()

    def _forget_relayed(self, gone: set[str]) -> bool:
        """Viewers behind a relay left: release what they held and take them off the control floor. Returns
        whether the floor changed."""
        changed = False
        for sender in gone:
            if self._dispatcher is not None:
                self._dispatcher.release(sender)
            changed = self._floor.leave(sender) or changed
            self._refused_input.discard(sender)
        return changed

    def _resized(self, encoder: Encoder) -> None:
        """The shared surface changed size: viewers reconfigure their decoders, input maps to the new bounds."""
        self._config = {**self._config, "codec": encoder.codec, "width": encoder.width, "height": encoder.height}
        if self._dispatcher is not None:
            self._dispatcher.resize(encoder.width, encoder.height)
        for viewer in self._offers.peers.values():
            if viewer.is_open:
                viewer.send_control(self._config)
        logger.info("sharing %s as %dx%d %s", self.display, encoder.width, encoder.height, encoder.codec)

    def _request_keyframe(self) -> None:
        if self._worker is not None:
            self._worker.request_keyframe()

    def _worker_failed(self, exc: BaseException) -> None:
        if not self.failed.done():
            self.failed.set_result(exc)
