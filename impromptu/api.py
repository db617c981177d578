"""A synchronous Python API for scripts and tests: a virtual display, apps on it, their windows, input, screenshots,
a live share and recordings — without the CLI.

    from impromptu import VirtualDisplay

    with VirtualDisplay(size=(1280, 800)) as vd:
        vd.launch(["xterm", "-T", "demo"])
        vd.wait_for_window("demo")
        vd.type_text("echo hi\\n")
        vd.screenshot("shot.png")
        share = vd.share()             # prints nothing: the links are share.operator_url and share.view_url
        with vd.record("demo.mp4"):    # a recording of what happens in the block (the files: .stop())
            vd.press("ctrl+l")

Threads. Everything asynchronous (the signaling server, the ``ShareSession`` with its viewers and recordings)
lives on one asyncio loop in a daemon thread of the display's own, started by the first ``share()`` or
``record()``; the caller's thread never touches those objects, it hands work to that loop
(``run_coroutine_threadsafe``) and waits for the answer. Input and screenshots use X connections of the caller's
side (not the session's), serialised by a lock, so a ``VirtualDisplay`` may be used from several threads; it is
the same X display either way, and the X server orders the events. ``close()`` may be called from any thread but
once the loop is stopping nothing else may be started.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from impromptu.display import WindowInfo, WindowSelector, Xvfb, wait_for_window
from impromptu.errors import DisplayError, ImpromptuError, RecordError, UsageError
from impromptu.link import link_host

if TYPE_CHECKING:
    from impromptu.input.xtest import XTestSink
    from impromptu.session import ShareSession
    from impromptu.signaling import SignalingServer
    from impromptu.signaling.seat import DesktopHandler, DesktopSeat, DesktopSignaling
    from impromptu.stream.record import Recording

__all__ = ["ScreenRecording", "Share", "VirtualDisplay"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

APP_STOP_TIMEOUT_S = 2.0
"""How long a launched app gets to exit on SIGTERM at ``close()`` before its process group is killed."""
LOOP_CALL_TIMEOUT_S = 30.0
"""The longest the caller waits for the share loop to start or stop something."""

_MODIFIERS = {
    "ctrl": "Control_L",
    "control": "Control_L",
    "shift": "Shift_L",
    "alt": "Alt_L",
    "meta": "Meta_L",
    "super": "Super_L",
    "win": "Super_L",
    "altgr": "ISO_Level3_Shift",
}
_CHAR_KEYS = {"\n": "Return", "\r": "Return", "\t": "Tab", "\b": "BackSpace", "\x1b": "Escape"}


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def keysyms_for_combo(combo: str) -> list[int]:
    """``"Return"``, ``"ctrl+a"``, ``"ctrl+shift+Tab"`` → the X keysyms to press in that order (and release the
    other way). Names are X keysym names (``xev`` shows them) or one character; ``ctrl``, ``shift``, ``alt``,
    ``meta``, ``super`` and ``altgr`` name the left modifier keys. Raises ``UsageError`` for an unknown name."""
    from Xlib import XK

    from impromptu.input.keymap import keysym_for_char

    XK.load_keysym_group("xkb")
    keysyms = []
    parts = combo.split("+") if combo != "+" else ["+"]
    if combo.endswith("++"):  # "ctrl++": the plus key itself
        parts = [*combo[:-2].split("+"), "+"]
    for part in parts:
        name = _MODIFIERS.get(part.lower(), part)
        keysym = int(XK.string_to_keysym(name)) if name else 0
        if keysym == 0 and len(name) == 1:
            keysym = keysym_for_char(name) or 0
        if keysym == 0:
            raise UsageError(f"key {part!r} in {combo!r} is not an X keysym name (e.g. Return, a, F5, ctrl+a)")
        keysyms.append(keysym)
    return keysyms


class _Handoff:
    """The ``DesktopSignaling`` (and seat) a display's one session is attached through: nobody can reach it at
    first (a session that only records needs no server and no port), then ``connect`` seats the session in the
    server ``share()`` starts. A session attaches once, when it starts: this hands that attachment on, so that
    sharing a display that records goes through the session already encoding it, never a second one. Used on the
    share loop only."""

    def __init__(self) -> None:
        self._desktop: tuple[str, DesktopHandler, int] | None = None
        self._seat: DesktopSeat | None = None

    def attach_desktop(self, room: str, handler: DesktopHandler, max_direct: int) -> _Handoff:
        self._desktop = (room, handler, max_direct)
        return self

    def connect(self, server: DesktopSignaling) -> None:
        if self._desktop is None or self._seat is not None:
            raise ImpromptuError("the display's session is not waiting for a signaling server")
        self._seat = server.attach_desktop(*self._desktop)

    def send(self, message: dict[str, Any]) -> None:
        if self._seat is not None:
            self._seat.send(message)

    def detach(self) -> None:
        self._desktop = None
        seat, self._seat = self._seat, None
        if seat is not None:
            seat.detach()


class _LoopThread:
    """An asyncio loop in a daemon thread of its own; ``call`` runs a coroutine there and waits for its result."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                self._cancel_tasks()
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.run_until_complete(self.loop.shutdown_default_executor())
            finally:
                self.loop.close()

    def _cancel_tasks(self) -> None:
        """What is still pending when the loop stops (left behind by a part that failed to stop) is cancelled and
        awaited, as ``asyncio.run`` does, rather than destroyed pending."""
        tasks = asyncio.all_tasks(self.loop)
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        results = self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, Exception):
                logger.warning("impromptu: %s failed while the share loop stopped: %s", task.get_name(), result)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = LOOP_CALL_TIMEOUT_S) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("impromptu's synchronous API cannot be called from its own share loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            future.cancel()
            raise ImpromptuError(f"the share loop did not answer within {timeout_s:g} s") from None

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(LOOP_CALL_TIMEOUT_S)
        if self._thread.is_alive():
            logger.warning(
                "impromptu: the share loop (thread %s) did not end within %g s; leaving it to end with the process",
                self._thread.name,
                LOOP_CALL_TIMEOUT_S,
            )


@dataclass
class Share:
    """A live share of the display: open ``operator_url`` to watch and drive it, ``view_url`` to watch only.

    The links hold the keys in their fragment (``#…``): whoever has one gets in. ``operator_url`` is ``None`` for
    a view-only share (``control=False``)."""

    operator_url: str | None
    view_url: str
    fingerprint: str | None
    """The HTTPS certificate's SHA-256 fingerprint when the bind is not loopback (compare it in the browser)."""
    _display: VirtualDisplay
    _session: ShareSession
    _server: SignalingServer | None
    _stopped: bool = False

    @property
    def viewers(self) -> int:
        """Viewers connected now."""
        return self._session.viewers

    def stop(self) -> None:
        """Stop sharing (idempotent); the display goes on. Its recordings stop too (they are made by the one
        session that encodes the display, which this ends)."""
        self._display._stop_share(self)

    def __enter__(self) -> Share:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ScreenRecording:
    """A recording of the display in progress (``VirtualDisplay.record``); ``stop()`` ends it and returns its
    files. Also a context manager that stops it on exit."""

    def __init__(self, display: VirtualDisplay, session: ShareSession, recording: Recording) -> None:
        self._display = display
        self._session = session
        self._recording = recording
        self._paths: list[Path] | None = None
        self._error: RecordError | None = None
        # The display's own lock: stopping takes it anyway, and one lock cannot be taken in two orders.
        self._lock = display._lock

    @property
    def path(self) -> Path:
        """The recording's file (of the first surface; ``paths`` lists every file written)."""
        return self._recording.path

    @property
    def started_us(self) -> int | None:
        """Capture time of the first frame written (µs since the epoch, the capture clock), or ``None``."""
        return self._recording.started_us

    @property
    def ended_us(self) -> int | None:
        """Capture time of the last frame written so far, or ``None``."""
        return self._recording.ended_us

    @property
    def paths(self) -> list[Path]:
        """The files written so far: one per surface, and one per size if the screen was resized."""
        return self._recording.paths

    def wait_started(self, timeout: float = 2.0) -> bool:
        """Block until the first frame (a keyframe) is written, for up to ``timeout`` seconds; whether it was.
        A recording starts at the next keyframe, which can take up to a quarter of a second to come (forced
        keyframes are rate-limited): wait for it when what follows must be in the recording from its start."""
        # The writer thread sets the event once it has written the first keyframe: it is thread-safe.
        return self._recording.started.wait(timeout)

    def stop(self) -> list[Path]:
        """Stop recording (idempotent): the files are complete when it returns, and it returns them. Raises
        ``RecordError`` if the recording failed (its writer stopped on an error) or holds nothing (no keyframe
        came); it is stopped all the same, and later calls raise the same error."""
        with self._lock:
            if self._paths is None and self._error is None:
                try:
                    self._display._stop_recording(self)
                except RecordError as exc:
                    self._error = exc
                else:
                    self._paths = self.paths
            if self._error is not None:
                raise self._error
            assert self._paths is not None
            return list(self._paths)

    def __enter__(self) -> ScreenRecording:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class VirtualDisplay:
    """A virtual X display (Xvfb) with the apps launched on it, input, screenshots, sharing and recording.

    ``start()``/``close()`` (or ``stop()``) are idempotent; also a context manager. ``close()`` stops, in order:
    recordings, the share, the apps (each app's whole process group: SIGTERM, then SIGKILL after 2 s), and the
    display. A closed display cannot be started again. See the module's docstring about threads.
    """

    def __init__(self, size: tuple[int, int] = (1280, 800), fps: int = 30) -> None:
        self.size = size
        self.fps = fps
        self._xvfb = Xvfb(size)
        self._state = _State.NEW
        self._lock = threading.RLock()
        self._apps: list[subprocess.Popen[Any]] = []
        self._sink: XTestSink | None = None
        self._loop: _LoopThread | None = None
        self._share: Share | None = None
        self._session: ShareSession | None = None
        """The one session that captures and encodes the display, for the share and the recordings alike (started
        by the first ``share()`` or ``record()``, ended by ``Share.stop()`` and ``close()``)."""
        self._handoff: _Handoff | None = None
        """How ``_session`` reaches a signaling server: through none until ``share()``."""
        self._session_ice: tuple[str, ...] = ()
        self._recordings: list[ScreenRecording] = []

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> VirtualDisplay:
        with self._lock:
            if self._state is _State.CLOSED:
                raise DisplayError("this VirtualDisplay was closed; make a new one")
            if self._state is _State.NEW:
                self._xvfb.start()
                self._state = _State.RUNNING
            return self

    def close(self) -> None:
        """Stop recordings, the share, the apps and the display (idempotent)."""
        with self._lock:
            if self._state is _State.CLOSED:
                return
            self._state = _State.CLOSED
            try:
                for recording in list(self._recordings):
                    with _logged("stopping a recording"):
                        recording.stop()
                if self._loop is not None:
                    if self._session is not None:
                        with _logged("stopping the session"):
                            self._loop.call(self._session.stop())
                        self._session = self._handoff = None
                    if self._share is not None and self._share._server is not None:
                        with _logged("stopping the signaling server"):
                            self._loop.call(self._share._server.stop())
                    self._loop.stop()
                    self._loop = None
                for app in self._apps:
                    _stop_process_group(app)
                if self._sink is not None:
                    self._sink.close()
                    self._sink = None
            finally:
                self._xvfb.stop()

    stop = close

    def __enter__(self) -> VirtualDisplay:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _running(self, action: str) -> None:
        if self._state is not _State.RUNNING:
            state = "not started" if self._state is _State.NEW else "closed"
            raise DisplayError(f"cannot {action}: the virtual display is {state}")

    @property
    def display(self) -> str:
        """The display's name, e.g. ``":3"``."""
        return self._xvfb.name

    @property
    def env(self) -> dict[str, str]:
        """An environment for apps: this process's, with ``DISPLAY`` set to this display (``os.environ`` is
        left alone)."""
        return self._xvfb.env()

    # -- apps and windows ------------------------------------------------------------------------------------

    def launch(self, command: str | Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``command`` (a list, or a string split like a shell would, unless ``shell=True``) on the display,
        in a session of its own; ``kwargs`` go to ``subprocess.Popen`` (an ``env`` given there gets ``DISPLAY``
        set). The app and whatever it starts in its process group are stopped at ``close()``."""
        with self._lock:
            self._running("launch an app")
            env = self._xvfb.env(kwargs.pop("env", None))
            if isinstance(command, str) and not kwargs.get("shell"):
                command = shlex.split(command)
            kwargs.setdefault("stdin", subprocess.DEVNULL)
            try:
                proc = subprocess.Popen(command, env=env, start_new_session=True, **kwargs)
            except FileNotFoundError as exc:
                raise ImpromptuError(f"command not found: {exc.filename or command}") from exc
            self._apps.append(proc)
            return proc

    @property
    def apps(self) -> list[subprocess.Popen[Any]]:
        """The apps launched so far (running or not), oldest first."""
        with self._lock:
            return list(self._apps)

    def stop_app(self, proc: subprocess.Popen[Any]) -> int | None:
        """Stop an app ``launch`` started, with its process group, as ``close()`` would; returns its exit status."""
        _stop_process_group(proc)
        with self._lock:
            if proc in self._apps:
                self._apps.remove(proc)
        return proc.returncode

    def wait_for_window(
        self, title: str | re.Pattern[str], timeout: float = 30.0, pid: int | None = None
    ) -> WindowInfo:
        """Block until a window whose title matches ``title`` (a regular expression, searched anywhere in the
        title: anchor it with ``^…$`` for a whole title) is mapped, and return it (the topmost if several).
        With ``pid``, only windows of that process or its children count (apps that set ``_NET_WM_PID``).
        Raises ``WindowNotFound`` after ``timeout`` seconds."""
        self._running("wait for a window")
        if isinstance(title, re.Pattern):
            inline = "".join(
                flag for bit, flag in ((re.I, "i"), (re.M, "m"), (re.S, "s"), (re.X, "x")) if title.flags & bit
            )
            regex = f"(?{inline}){title.pattern}" if inline else title.pattern
        else:
            regex = title
        return wait_for_window(self.display, WindowSelector(title_regex=regex), timeout, pid)

    # -- input: XTEST through impromptu's own sink -------------------------------------------------------------

    def _input(self) -> XTestSink:
        self._running("send input")
        if self._sink is None:
            from impromptu.input.xtest import XTestSink

            self._sink = XTestSink(self.display)
        return self._sink

    def _synced(self, sink: XTestSink) -> None:
        # A round trip: the X server has handled the events when this returns (the app may not have yet).
        sink.connection.sync()

    def move(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)`` (screen pixels)."""
        with self._lock:
            sink = self._input()
            sink.move(x, y)
            self._synced(sink)

    def click(self, x: int, y: int, button: int = 1) -> None:
        """Move the pointer to ``(x, y)`` and click ``button`` (1 left, 2 middle, 3 right, 4/5 wheel)."""
        with self._lock:
            sink = self._input()
            sink.move(x, y)
            sink.button(button, True)
            sink.button(button, False)
            self._synced(sink)

    def type_text(self, text: str) -> None:
        """Type ``text``, character by character (``\\n`` presses Return, ``\\t`` Tab), whatever the keyboard
        layout: a character no key types is bound to a spare keycode for the time being."""
        from impromptu.input.keymap import keysym_for_char

        with self._lock:
            sink = self._input()
            for char in text:
                named = _CHAR_KEYS.get(char)
                keysym = keysyms_for_combo(named)[0] if named else keysym_for_char(char)
                if keysym is None:
                    raise UsageError(f"cannot type {char!r}: no X keysym types it")
                sink.keysym(keysym, True)
                sink.keysym(keysym, False)
            self._synced(sink)

    def press(self, key: str) -> None:
        """Press and release a key or a combination: X keysym names joined by ``+``, e.g. ``"Return"``,
        ``"ctrl+a"``, ``"ctrl+shift+Tab"``, ``"F5"`` (modifiers pressed first, released last)."""
        keysyms = keysyms_for_combo(key)
        with self._lock:
            sink = self._input()
            try:
                for keysym in keysyms:
                    sink.keysym(keysym, True)
            finally:
                for keysym in reversed(keysyms):
                    sink.keysym(keysym, False)
            self._synced(sink)

    # -- screenshots -------------------------------------------------------------------------------------------

    def screenshot(self, path: str | os.PathLike[str] | None = None) -> np.ndarray:
        """The whole screen now, as an RGB array of shape ``(height, width, 3)``; also written to ``path`` as a
        PNG when given."""
        import cv2
        import mss

        with self._lock:
            self._running("take a screenshot")
            width, height = self.size
            with mss.MSS(display=self.display) as grabber:
                shot = grabber.grab({"left": 0, "top": 0, "width": width, "height": height})
            bgra = np.frombuffer(shot.raw, dtype=np.uint8).reshape(shot.height, shot.width, 4)
            if path is not None:
                target = Path(path)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(target), bgra[:, :, :3]):
                    raise ImpromptuError(f"cannot write the screenshot to {target}")
            return np.ascontiguousarray(bgra[:, :, 2::-1])

    # -- sharing and recording -----------------------------------------------------------------------------------

    def _loop_thread(self) -> _LoopThread:
        if self._loop is None:
            self._loop = _LoopThread(f"impromptu-share-{self.display}")
        return self._loop

    def _session_for(self, ice_addresses: tuple[str, ...] | None) -> ShareSession:
        """The display's one session, started if need be (``ice_addresses``: the ICE addresses it must offer, or
        ``None`` for any). Called with the lock held."""
        from impromptu.link import LinkKeys
        from impromptu.rtc import IcePolicy

        try:
            ice = IcePolicy(addresses=ice_addresses or ())
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        loop = self._loop_thread()
        session = self._session
        if session is not None and ice_addresses is not None and ice_addresses != self._session_ice:
            # The addresses are the session's from its start: a session that only recorded is started anew.
            if any(r._session is session for r in self._recordings):
                raise UsageError(
                    "cannot share with other ICE addresses while the display records: call share() before "
                    "record(), or stop the recordings first"
                )
            self._session = self._handoff = None
            loop.call(session.stop())
            session = None
        if session is None:
            handoff = _Handoff()
            session = loop.call(self._start_session(LinkKeys.generate(), handoff, ice))
            self._session, self._handoff, self._session_ice = session, handoff, ice_addresses or ()
        return session

    def share(self, bind: str = "127.0.0.1:0", ice_addresses: Sequence[str] = (), control: bool = True) -> Share:
        """Share the display live: a signaling and page server on ``bind`` (``HOST:PORT``; port 0 picks a free one;
        not loopback ⇒ HTTPS with a self-signed certificate) and a session any number of browsers can join.
        ``ice_addresses`` limits the addresses offered to viewers (e.g. the runner's reachable one). With
        ``control=False`` only a view-only link is made. Sharing again returns the share already running. A
        display that records is shared through the session that records it (one capture, one encode)."""
        from impromptu.runner import parse_bind
        from impromptu.signaling import SignalingServer
        from impromptu.tls import server_ssl_context

        with self._lock:
            self._running("share the display")
            if self._share is not None:
                return self._share
            host, port = parse_bind(bind)
            ssl_context, fingerprint = server_ssl_context(host, None, None)
            session = self._session_for(tuple(ice_addresses))
            handoff = self._handoff
            assert handoff is not None  # set with the session

            async def start() -> SignalingServer:
                server = SignalingServer(host, port, ssl_context)
                await server.start()
                try:
                    handoff.connect(server)
                except BaseException:
                    await server.stop()
                    raise
                return server

            server = self._loop_thread().call(start())
            page = f"{server.scheme}://{link_host(host)}:{server.port}/"
            self._share = Share(
                operator_url=f"{page}#{session.keys.control_fragment()}" if control else None,
                view_url=f"{page}#{session.keys.view_fragment()}",
                fingerprint=fingerprint,
                _display=self,
                _session=session,
                _server=server,
            )
            return self._share

    async def _start_session(self, keys: Any, server: DesktopSignaling, ice: Any) -> ShareSession:
        from impromptu.session import ShareOptions, ShareSession

        session = ShareSession(self.display, keys, server, ShareOptions(fps=self.fps, ice=ice))
        await session.start()
        return session

    def _stop_share(self, share: Share) -> None:
        with self._lock:
            if share._stopped:
                return
            share._stopped = True
            for recording in [r for r in self._recordings if r._session is share._session]:
                with _logged("stopping a recording"):
                    recording.stop()
            if self._session is share._session:
                self._session = self._handoff = None
            if self._loop is not None:
                self._loop.call(share._session.stop())
                if share._server is not None:
                    self._loop.call(share._server.stop())
            if self._share is share:
                self._share = None

    def recording_suffix(self) -> str:
        """The suffix ``record()`` gives a path without one: ``.mp4`` when the display's stream is H.264 (the
        usual codec), ``.webm`` when it is VP8. Starts the session that records the display if none runs yet."""
        with self._lock:
            self._running("record the display")
            session = self._session_for(None)

            async def suffix() -> str:
                from impromptu.stream.record import container_for

                return container_for(next(iter(session.surfaces.values())).config["codec"])

            return self._loop_thread().call(suffix())

    def record(self, path: str | os.PathLike[str], segment_s: float | None = None) -> ScreenRecording:
        """Start recording the display to ``path``: the encoded stream as viewers get it (no second encode), from
        a keyframe, at true speed. ``.mp4`` for H.264 (the usual codec), ``.webm`` for VP8; a path with neither
        suffix gets the stream's appended (``recording_suffix()``). With ``segment_s``, only about the last
        ``segment_s`` seconds are kept. Through the display's one session: the share's if it is shared, else one
        nobody can join (no server, no port) until ``share()`` is called. Returns a ``ScreenRecording``: ``stop()``
        it, or use it as a context manager (``close()`` stops it too)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._running("record the display")
            if target.suffix.lower() not in (".mp4", ".webm"):
                target = target.with_name(target.name + self.recording_suffix())
            session = self._session_for(None)

            async def begin() -> Recording:
                return session.start_recording(target, segment_s)

            recording = ScreenRecording(self, session, self._loop_thread().call(begin()))
            self._recordings.append(recording)
            return recording

    def _stop_recording(self, recording: ScreenRecording) -> None:
        """``RecordError`` if the recording failed or holds nothing; it is stopped and forgotten all the same."""
        with self._lock:
            if recording in self._recordings:
                self._recordings.remove(recording)
            if self._loop is None:
                return
            self._loop.call(recording._session.stop_recording(recording._recording))


def _stop_process_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM to the app's process group, SIGKILL to what is left after ``APP_STOP_TIMEOUT_S``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(APP_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM; killing it", proc.args)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(APP_STOP_TIMEOUT_S)


@contextlib.contextmanager
def _logged(action: str) -> Any:
    """Go on closing after a failure, and say so: one broken part must not leave the others running."""
    try:
        yield
    except Exception as exc:
        logger.warning("impromptu: %s failed: %s", action, exc)
