"""A sharing session: one display's capture → encode → hub → viewers, and their input back.

What is shared is one or more **surfaces** (protocol.md §8): the whole display (surface 0), or shared windows
(surfaces 1, 2, … in the order given), each with its own capture source, encoder, worker, hub and input
dispatcher, all to the same viewers over their one pair of channels. A window's surface pauses while the window is
unmapped and ends when it is destroyed; when every shared window has ended, so does the session (``ended``).

Start order: input sink, capture sources and encoders (so the first viewer gets a stream config at once), the
workers (paused until someone watches), then the seat in the signaling room. Stop runs the other way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from aiortc import RTCDataChannel

from impromptu.capture import FrameSource, open_screen_source, open_window_source
from impromptu.capture.base import Frame
from impromptu.control import ControlFloor, ControlMode
from impromptu.display.windows import WindowInfo
from impromptu.encode import Encoder
from impromptu.encode.thumbnail import downscale, jpeg
from impromptu.encode.worker import EncodeWorker
from impromptu.errors import ImpromptuError
from impromptu.files.folder import TransferFolder
from impromptu.files.service import LISTING_MAX_AGE_S, FileService
from impromptu.files.wire import LABEL as FILE_LABEL
from impromptu.files.wire import refuse
from impromptu.input import InputDispatcher, InputSink, open_input_sink
from impromptu.input.window import WindowInput
from impromptu.input.xtest import XTestSink
from impromptu.link import LinkKeys, Role
from impromptu.relayed import RelayedViewers
from impromptu.rtc import IcePolicy, ViewerOffers, ViewerPeer
from impromptu.signaling import DesktopSeat, DesktopSignaling
from impromptu.stats.book import ConnectionFigures, StatsBook
from impromptu.stream.framing import EncodedChunk
from impromptu.stream.hub import Hub
from impromptu.stream.record import Recording

logger = logging.getLogger(__name__)
T = TypeVar("T")

SCREEN = 0
"""The surface number of the whole display."""
MAX_TEXT = 200
"""Longest ``title`` and ``reason`` sent to pages (protocol.md §8)."""
MAX_PEERS = 32
"""Viewers plus offers awaiting an answer: joins beyond this are rejected before any resources are spent."""
STATS_INTERVAL_S = 1.0
"""Every watching viewer gets a ``diagnosis`` this often (protocol.md §10)."""
STATS_REQUEST_MIN_S = 0.25
"""A viewer's ``stats.request``s are answered at most this often; those in between are dropped."""


@dataclass(frozen=True)
class ShareOptions:
    fps: int = 30
    ice: IcePolicy = field(default_factory=IcePolicy)
    control: ControlMode = ControlMode.SHARED
    max_direct: int = MAX_PEERS
    """Viewers (relays included) the desktop serves itself; signaling sends later ones to relays."""
    windows: tuple[WindowInfo, ...] = ()
    """Windows to share, as surfaces 1, 2, … in this order; none: the whole display, as surface 0."""
    files: TransferFolder | None = None
    """The transfer folder (protocol.md §9), owned by the session from ``start``; ``None``: no files."""
    viewers_upload: bool = False
    """Whether view-only viewers may upload too."""


@dataclass
class Surface:
    """One shared surface and everything of its own: its stream (worker → hub) and its input (dispatcher)."""

    number: int
    window: WindowInfo | None
    hub: Hub
    config: dict[str, Any]
    worker: EncodeWorker | None = None
    dispatcher: InputDispatcher | None = None
    state: str = "live"
    """``"live"``, ``"paused"`` or ``"ended"`` (protocol.md §8)."""
    reason: str = ""

    def state_message(self) -> dict[str, Any]:
        return {"type": "surface.state", "surface": self.number, "state": self.state, "reason": self.reason}


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
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

    def __init__(self, display: str, keys: LinkKeys, server: DesktopSignaling, options: ShareOptions) -> None:
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
            on_channel=self._viewer_channel,
        )
        self._files = None if options.files is None else FileService(options.files, self._files_changed)
        self._refusals: set[asyncio.Future[None]] = set()
        """File channels being refused, and file listings being made: kept until done."""
        self._attachment: DesktopSeat | None = None
        self._surfaces: dict[int, Surface] = {}
        self._members: set[str] = set()
        """Connected viewers with a verified role: those the hubs send video to."""
        self._sink: InputSink | None = None
        self._sink_fd: int | None = None
        self._floor = ControlFloor(options.control)
        self._relayed = RelayedViewers(keys)
        self._refused_input: set[str] = set()
        self.refused_input = 0
        """Input messages dropped because their viewer may not control (all viewers, since start)."""
        self._dropped_surface: set[str] = set()
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        """Set, with a one-line message, when every shared window has ended (never for the whole display)."""
        self._stats = StatsBook()
        self._stats_task: asyncio.Task[None] | None = None
        self._stats_answered: dict[str, float] = {}
        """When each viewer's last ``stats.request`` was answered (loop time)."""
        self._recordings: set[Recording] = set()
        self._active = False
        """Whether the workers capture: someone watches, or something records."""
        self._started = False
        self._stopped = False

    async def start(self) -> None:
        if self._started:
            raise ImpromptuError("a session can only be started once")
        self._started = True
        sink = await in_daemon_thread(open_input_sink, self.display)
        if self._options.windows and not isinstance(sink, XTestSink):
            sink.close()
            raise ImpromptuError("sharing single windows needs X input injection (XTEST)")
        opened: list[tuple[FrameSource, Encoder]] = []
        confined: list[WindowInput] = []
        try:
            for window in self._options.windows or (None,):
                if window is None:
                    source: FrameSource = await in_daemon_thread(open_screen_source, self.display)
                else:
                    source = await in_daemon_thread(open_window_source, self.display, window.id)
                try:
                    width, height = source.size
                    opened.append((source, Encoder(max(width, 2), max(height, 2), self._options.fps)))
                except BaseException:
                    source.close()
                    raise
            if self._options.windows:
                assert isinstance(sink, XTestSink)  # checked above
                confined = [WindowInput(sink, window.id) for window in self._options.windows]
        except BaseException:
            for source, encoder in opened:
                encoder.close()
                source.close()
            sink.close()
            raise
        self._sink = sink
        loop = asyncio.get_running_loop()
        if isinstance(sink, XTestSink) and self._options.windows:
            # Window input watches the focus, to release held keys when it leaves (input/window.py).
            self._sink_fd = sink.fileno()
            loop.add_reader(self._sink_fd, sink.process_events)
        windows: tuple[WindowInfo | None, ...] = self._options.windows or (None,)
        for index, (window, (source, encoder)) in enumerate(zip(windows, opened, strict=True)):
            number = SCREEN if window is None else index + 1
            surface = Surface(
                number,
                window,
                Hub(
                    partial(self._request_keyframe, number),
                    partial(self._skipped, number),
                ),
                {
                    "type": "config",
                    "surface": number,
                    "codec": encoder.codec,
                    "width": encoder.width,
                    "height": encoder.height,
                    "fps": self._options.fps,
                },
            )
            if window is None:
                surface.dispatcher = InputDispatcher(sink, encoder.width, encoder.height)
            else:
                surface.config["title"] = window.title[:MAX_TEXT]
                surface.dispatcher = InputDispatcher(confined[index], encoder.width, encoder.height, clamp=True)
            surface.worker = EncodeWorker(
                source,
                encoder,
                number,
                partial(self._publish, number),
                self._worker_failed,
                loop,
                on_resize=partial(self._resized, number),
                on_state=partial(self._surface_state, number),
                watch_idle=window is not None,
                on_rename=partial(self._renamed, number),
            )
            self._surfaces[number] = surface
        for surface in self._surfaces.values():
            assert surface.worker is not None
            surface.worker.start()
        if self._files is not None:
            await self._files.start()
        self._stats_task = asyncio.ensure_future(self._stats_loop())
        self._attachment = self._server.attach_desktop(
            self.keys.room, self._offers.signal, max_direct=min(MAX_PEERS, self._options.max_direct)
        )
        logger.info("sharing %s: %s", self.display, self.describe())

    def describe(self) -> str:
        parts = []
        for surface in self._surfaces.values():
            c = surface.config
            what = f"{c['width']}x{c['height']} {c['codec']} up to {c['fps']} fps"
            if surface.window is not None:
                what = f"window {surface.window.id_hex} {surface.window.title[:60]!r}: {what}"
            parts.append(what)
        return "; ".join(parts)

    @property
    def surfaces(self) -> dict[int, Surface]:
        """The shared surfaces by number (read-only use)."""
        return self._surfaces

    @property
    def viewers(self) -> int:
        return len(self._members)

    async def thumbnail(self, timeout_s: float = 2.0) -> bytes | None:
        """A small JPEG of the first surface as it is now (for the lobby), or ``None`` if it has none to show (a
        paused window, or nothing within ``timeout_s``). The encode thread only scales it down."""
        surface = next(iter(self._surfaces.values()), None)
        if surface is None or surface.worker is None or surface.state != "live":
            return None
        loop = asyncio.get_running_loop()
        picture: asyncio.Future[np.ndarray] = loop.create_future()

        def settle(small: np.ndarray) -> None:
            if not picture.done():
                picture.set_result(small)

        def take(frame: Frame) -> None:  # on the worker's thread
            loop.call_soon_threadsafe(settle, downscale(frame))

        surface.worker.snapshot(take)
        try:
            small = await asyncio.wait_for(picture, timeout_s)
        except TimeoutError:
            return None
        return await asyncio.to_thread(jpeg, small)

    async def stop(self) -> None:
        """Stop sharing (idempotent): the recordings still running, all at once, then everything else. If a
        recording failed, its ``RecordError`` is raised once everything is stopped (any other, logged)."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        # All at once (each may wait up to CLOSE_FRAME_TIMEOUT_S for its last frame); one failing stops no other.
        recordings = list(self._recordings)
        closed = await asyncio.gather(*(recording.close() for recording in recordings), return_exceptions=True)
        failures = [result for result in closed if isinstance(result, BaseException)]
        for failure in failures[1:]:
            logger.error("%s", failure)
        if self._attachment is not None:
            self._attachment.detach()
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stats_task
        await self._offers.stop()
        if self._files is not None:
            await self._files.close()
        for surface in self._surfaces.values():
            if surface.worker is not None:
                await asyncio.to_thread(surface.worker.stop)
        if self._sink is not None:
            if self._sink_fd is not None:
                asyncio.get_running_loop().remove_reader(self._sink_fd)
            self._sink.close()
        if failures:
            raise failures[0]  # once everything else is stopped

    # Recordings -----------------------------------------------------------------------------------------------

    def start_recording(self, path: Path, segment_s: float | None = None) -> Recording:
        """Record every surface (the very packets viewers get) into ``path`` (``.mp4`` for H.264, ``.webm`` for
        VP8; other surfaces beside it, see ``impromptu.stream.record``), from the next keyframe, which is asked for
        now; with ``segment_s``, keep only about the last ``segment_s`` seconds. Surfaces encode while a recording
        runs, watched or not. ``RecordError`` if ``path`` cannot take it. Cheap: start and stop as often as
        wanted."""
        if not self._started or self._stopped:
            raise ImpromptuError("a recording needs a running session")
        surfaces = {
            number: (s.config["codec"], s.config["width"], s.config["height"])
            for number, s in self._surfaces.items()
            if s.state != "ended"
        }
        recording = Recording(
            path,
            surfaces,
            self._recording_keyframe,
            segment_s=segment_s,
            fps=self._options.fps,
            on_closed=self._recording_closed,
        )
        self._recordings.add(recording)
        activated = self._update_active()
        recording.start(request_keyframes=not activated)  # (activating the workers asked for keyframes)
        logger.info("recording %s to %s", self.display, path)
        return recording

    async def stop_recording(self, recording: Recording) -> None:
        """End ``recording``: its files last until now and are complete when this returns (idempotent).
        ``RecordError`` (``from`` the writer's error, if it failed) if the recording failed or nothing was
        recorded; the files are finished even then, as far as they got."""
        await recording.close()

    @property
    def recordings(self) -> set[Recording]:
        """The recordings running now (read-only use)."""
        return self._recordings

    def _recording_keyframe(self, number: int) -> bool:
        surface = self._surfaces.get(number)
        if surface is None or surface.state != "live" or surface.worker is None:
            return False
        surface.worker.request_keyframe()
        return True

    def _recording_closed(self, recording: Recording) -> None:
        self._recordings.discard(recording)
        self._update_active()

    def _update_active(self) -> bool:
        """Surfaces capture while someone watches or something records, and only then. Whether this just
        activated them (``set_active(True)`` asks each for a keyframe too)."""
        active = bool(self._members) or bool(self._recordings)
        if active == self._active:
            return False  # (set_active(True) also asks for a keyframe: not for nothing)
        self._active = active
        for surface in self._surfaces.values():
            if surface.worker is not None and surface.state != "ended":
                surface.worker.set_active(active)
        return active

    def _publish(self, number: int, chunk: EncodedChunk) -> None:
        """A surface's encoded frame: to its viewers, and into every recording."""
        self._surfaces[number].hub.publish(chunk)
        for recording in self._recordings:
            recording.feed(chunk)

    def _send_signal(self, message: dict[str, Any]) -> None:
        if self._attachment is not None:
            self._attachment.send(message)

    # Viewers ---------------------------------------------------------------------------------------------

    def _viewer_open(self, viewer: ViewerPeer) -> None:
        role = self._offers.roles.get(viewer.id)
        if role is None or self._offers.peers.get(viewer.id) is not viewer:
            return  # Superseded or closed meanwhile.
        logger.info("viewer %s connected (%s)", viewer.id, role.value)
        self._members.add(viewer.id)
        self._stats.join(viewer.id, role.value)
        for surface in self._surfaces.values():
            viewer.send_control(surface.config)
            if surface.state != "live":
                viewer.send_control(surface.state_message())
        self._list_files_for(viewer, role, max_age_s=0.0)  # what is there now: files may have come meanwhile
        for surface in self._surfaces.values():
            if surface.state != "ended":
                surface.hub.add(viewer)
        if not self._update_active():
            # Already capturing: the new viewer still starts from a keyframe of each surface.
            for number in self._surfaces:
                self._request_keyframe(number)
        self._send_presence()

    def _viewer_closed(self, viewer: ViewerPeer) -> None:
        changed = viewer.id in self._members
        if self._offers.forget(viewer):  # also releases its sockets
            self._refused_input.discard(viewer.id)
            self._dropped_surface.discard(viewer.id)
            changed = self._floor.leave(viewer.id) or changed
        self._members.discard(viewer.id)
        self._stats.forget(viewer.id)
        self._stats_answered.pop(viewer.id, None)
        for surface in self._surfaces.values():
            surface.hub.remove(viewer.id)
        self._release(viewer.id)
        behind = bool(self._relayed.roles(viewer.id))
        changed = self._forget_relayed(self._relayed.relay_closed(viewer.id)) or changed or behind
        if not self._members:
            self._update_active()
        if changed:
            self._send_presence()

    # Files (protocol.md §9) ---------------------------------------------------------------------------------

    def _may_upload(self, role: Role) -> bool:
        return role is Role.CONTROL or self._options.viewers_upload

    def _file_list(self, role: Role) -> dict[str, Any]:
        if self._files is None:
            return {"type": "file.list", "enabled": False}
        return self._files.listing(self._may_upload(role))

    def _list_files_for(self, viewer: ViewerPeer, role: Role, max_age_s: float) -> None:
        task = asyncio.ensure_future(self._send_file_list(viewer, role, max_age_s))
        self._refusals.add(task)
        task.add_done_callback(self._refusals.discard)

    async def _send_file_list(self, viewer: ViewerPeer, role: Role, max_age_s: float) -> None:
        """Send a ``file.list``, the folder listed again unless that was done less than ``max_age_s`` ago."""
        if self._files is not None:
            await self._files.refresh(max_age_s)
        viewer.send_control(self._file_list(role))

    def _viewer_channel(self, viewer: ViewerPeer, channel: RTCDataChannel) -> None:
        role = self._offers.roles.get(viewer.id)
        if channel.label != FILE_LABEL or role is None or viewer.id not in self._members:
            logger.info("viewer %s: closed a channel it opened (%r)", viewer.id, channel.label[:40])
            channel.close()
        elif self._files is None:
            refusal = asyncio.ensure_future(refuse(channel, "this desktop takes no files (started with --no-files)"))
            self._refusals.add(refusal)
            refusal.add_done_callback(self._refusals.discard)
        else:
            self._files.accept(channel, viewer.id, self._may_upload(role))

    def _files_changed(self) -> None:
        for pid, peer in self._watching().items():
            peer.send_control(self._file_list(self._offers.roles[pid]))

    def _release(self, sender: str) -> None:
        """Release every key and button ``sender`` holds, on every surface."""
        for surface in self._surfaces.values():
            if surface.dispatcher is not None:
                surface.dispatcher.release(sender)

    def _watching(self) -> dict[str, ViewerPeer]:
        """Connected viewers (with a verified role): those the hubs send video to."""
        return {pid: peer for pid, peer in self._offers.peers.items() if pid in self._members}

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

    def _skipped(self, number: int, viewer_id: str, frames: int) -> None:
        viewer = self._offers.peers.get(viewer_id)
        if viewer is not None:
            logger.info("viewer %s caught up on surface %d after %d skipped frames", viewer_id, number, frames)
            viewer.send_control({"type": "stream.skipped", "surface": number, "frames": frames})

    def _viewer_control(self, viewer: ViewerPeer, message: dict[str, Any]) -> None:
        kind = message["type"]
        role = self._offers.roles.get(viewer.id)
        if role is None or self._offers.peers.get(viewer.id) is not viewer or viewer.id not in self._members:
            return  # not (yet) watching: its channels are not both open, so it has not had a presence either
        if kind == "keyframe.request":
            number = message.get("surface")
            if isinstance(number, int) and not isinstance(number, bool):
                self._request_keyframe(number)
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
        elif kind == "file.list":
            self._list_files_for(viewer, role, max_age_s=LISTING_MAX_AGE_S)
        elif kind == "stats":
            self._stats.page_stats(viewer.id, role.value, message)
        elif kind == "stats.request":
            self._answer_stats(viewer, role)
        else:
            logger.warning("viewer %s: dropped unknown control message %r", viewer.id, kind[:40])

    def _from_viewer(self, sender: str, role: Role, message: dict[str, Any]) -> None:
        """Input or a control request from ``sender`` — a connected viewer, or one behind a relay whose envelope
        verified — with the role its key proved."""
        kind = message["type"]
        if kind.startswith("input."):
            if kind == "input.release":
                self._release(sender)  # its own keys only, on every surface, whether it may control or not
            elif self._floor.may_input(sender, role):
                surface = self._input_surface(sender, message)
                if surface is not None and surface.dispatcher is not None:
                    surface.dispatcher.handle(sender, message)
            else:
                self.refused_input += 1
                if sender not in self._refused_input:
                    self._refused_input.add(sender)  # one line per viewer, not one per mouse move
                    why = "a view-only viewer" if role is Role.VIEW else "a viewer that does not hold control"
                    logger.warning("viewer %s: dropped %s (and later input) from %s", sender, kind, why)
        else:
            holder = self._floor.holder
            changed = self._floor.request(sender, role) if kind == "control.request" else self._floor.release(sender)
            if holder is not None and self._floor.holder != holder:
                self._release(holder)  # what the old holder held must not stay pressed
            if changed:
                logger.info("viewer %s: %s; control: %s", sender, kind, self._floor.holder or "nobody")
                self._refused_input.discard(sender)
                self._send_presence()

    def _input_surface(self, sender: str, message: dict[str, Any]) -> Surface | None:
        """The live surface ``message`` acts on (``surface``, 0 when absent), or ``None``: input for a surface
        that is not live, or does not exist, is dropped (protocol.md §8; one log line per viewer)."""
        number = message.get("surface", SCREEN)
        surface = None
        if isinstance(number, int) and not isinstance(number, bool):
            surface = self._surfaces.get(number)
        if surface is not None and surface.state == "live":
            return surface
        if sender not in self._dropped_surface:
            self._dropped_surface.add(sender)
            state = "no such surface" if surface is None else f"the surface is {surface.state}"
            logger.info(
                "viewer %s: dropped %s for surface %.20r (and later such input): %s",
                sender,
                message["type"],
                number,
                state,
            )
        return None

    def _forget_relayed(self, gone: set[str]) -> bool:
        """Viewers behind a relay left: release what they held and take them off the control floor. Returns
        whether the floor changed."""
        changed = False
        for sender in gone:
            self._release(sender)
            changed = self._floor.leave(sender) or changed
            self._refused_input.discard(sender)
            self._dropped_surface.discard(sender)
        return changed

    def _resized(self, number: int, encoder: Encoder) -> None:
        """A surface changed size: viewers reconfigure their decoders, input maps to the new bounds."""
        surface = self._surfaces[number]
        surface.config = {**surface.config, "codec": encoder.codec, "width": encoder.width, "height": encoder.height}
        if surface.dispatcher is not None:
            surface.dispatcher.resize(encoder.width, encoder.height)
        for recording in self._recordings:
            recording.resized(number, encoder.codec, encoder.width, encoder.height)
        for viewer in self._offers.peers.values():
            if viewer.is_open:
                viewer.send_control(surface.config)
        logger.info(
            "surface %d of %s is now %dx%d %s", number, self.display, encoder.width, encoder.height, encoder.codec
        )

    def _renamed(self, number: int, title: str) -> None:
        """A window's title changed: viewers get its config again, with only the new title for its tab (a rename,
        protocol.md §8: pages keep decoding, so no keyframe is due)."""
        surface = self._surfaces[number]
        title = title[:MAX_TEXT]
        if surface.state == "ended" or surface.config.get("title") == title:
            return
        surface.config = {**surface.config, "title": title}
        for viewer in self._offers.peers.values():
            if viewer.is_open:
                viewer.send_control(surface.config)
        logger.info("surface %d of %s is now titled %r", number, self.display, title[:80])

    def _surface_state(self, number: int, state: str, reason: str) -> None:
        """A window's surface paused, is live again, or ended (from its worker): tell every viewer; what viewers
        held on it is released, since its input is dropped from now on."""
        surface = self._surfaces[number]
        if surface.state == "ended" or surface.state == state:
            return
        if state == "paused":
            # The worker's reason names the window by id; the page's words are for a person.
            small = "too small" in reason
            reason = "the window is too small to show" if small else "the window is not shown (minimised or hidden)"
        elif state == "ended":
            reason = "the window was closed"
        surface.state, surface.reason = state, reason[:MAX_TEXT]
        if state != "live" and surface.dispatcher is not None:
            surface.dispatcher.release_all()
        logger.info(
            "surface %d (%s): %s%s",
            number,
            surface.window.id_hex if surface.window else "screen",
            state,
            f": {reason}" if reason else "",
        )
        for viewer in self._watching().values():
            viewer.send_control(surface.state_message())
        if state == "ended":
            for recording in self._recordings:
                recording.ended(number)
            for viewer_id in list(self._members):
                surface.hub.remove(viewer_id)
            if all(s.state == "ended" for s in self._surfaces.values()) and not self.ended.done():
                shared = "the shared window was" if len(self._surfaces) == 1 else "every shared window was"
                self.ended.set_result(f"{shared} closed")

    # Statistics and diagnosis (protocol.md §10) -------------------------------------------------------------

    def _surface_figures(self) -> dict[str, dict[str, Any]]:
        """Each surface's figures over the last second (``state`` too: a paused or ended one encodes nothing)."""
        out = {}
        for number, surface in self._surfaces.items():
            if surface.worker is not None:
                out[str(number)] = {**surface.worker.meter.figures(), "state": surface.state}
        return out

    def stats_snapshot(self) -> dict[str, Any]:
        """The whole picture: protocol.md §10's ``stats.snapshot`` without its ``type`` — ``{"desktop": {"surfaces":
        {"N": {...}}}, "viewers": [{peer, role, desktop_side, page_side, verdict, reasons}]}`` (figures as of the
        last second's tick)."""
        return self._stats.snapshot(self._surface_figures())

    def _answer_stats(self, viewer: ViewerPeer, role: Role) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._stats_answered.get(viewer.id, -STATS_REQUEST_MIN_S) < STATS_REQUEST_MIN_S:
            return
        self._stats_answered[viewer.id] = now
        only = None if role is Role.CONTROL else viewer.id
        viewer.send_control({"type": "stats.snapshot", **self._stats.snapshot(self._surface_figures(), only)})

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            try:
                self._stats_tick()
            except Exception:  # statistics must never take the session down
                logger.exception("could not gather connection statistics")

    def _stats_tick(self) -> None:
        """Judge every watching viewer's connection and send it the verdict."""
        surfaces = self._surface_figures()
        live = {n: s for n, s in surfaces.items() if s["state"] == "live"}
        watching = self._watching()
        figures = {}
        for pid, peer in watching.items():
            sent = dropped = 0
            for surface in self._surfaces.values():
                s, d = surface.hub.counts(pid)
                sent, dropped = sent + s, dropped + d
            figures[pid] = ConnectionFigures(peer, self._offers.roles[pid].value, sent, dropped)
        verdicts = self._stats.tick(live, figures)
        for pid, diagnosis in verdicts.items():
            if diagnosis.verdict is not None:  # none yet: a finding needs two seconds in a row
                watching[pid].send_control(
                    {
                        "type": "diagnosis",
                        "verdict": diagnosis.verdict,
                        "reasons": list(diagnosis.reasons),
                        "figures": self._stats.desktop_side(pid),
                    }
                )
            # A relay's viewers: their verdicts go to the relay, which passes each on to its viewer (§10).
            for behind_id, behind in self._stats.behind(pid).items():
                if behind.verdict is not None:
                    watching[pid].send_control(
                        {
                            "type": "diagnosis",
                            "peer": behind_id,
                            "verdict": behind.verdict,
                            "reasons": list(behind.reasons),
                        }
                    )

    def _request_keyframe(self, number: int) -> None:
        surface = self._surfaces.get(number)
        if surface is not None and surface.state != "ended" and surface.worker is not None:
            surface.worker.request_keyframe()

    def _worker_failed(self, exc: BaseException) -> None:
        if not self.failed.done():
            self.failed.set_result(exc)
