"""Process lifecycle for the CLI commands: server, display, app and session up in order, down in reverse, on
the app's exit, Ctrl-C or SIGTERM — leaving no process, display or socket behind."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from impromptu import health
from impromptu.control import ControlMode
from impromptu.display import App, WindowInfo, WindowSelector, Xvfb, find_windows, parse_size, wait_for_window
from impromptu.encode.encoder import available_codecs
from impromptu.errors import AppError, ImpromptuError, RecordError, UsageError
from impromptu.files.folder import PART_RE, TransferFolder
from impromptu.link import LinkKeys, link_host
from impromptu.rtc import IcePolicy
from impromptu.session import MAX_PEERS, ShareOptions, ShareSession, in_daemon_thread
from impromptu.signaling import DesktopSignaling, RemoteSignaling, SignalingServer, SignalUrl
from impromptu.stats.report import prometheus
from impromptu.stream.record import Recording, check_path, surface_path
from impromptu.tls import server_ssl_context

logger = logging.getLogger(__name__)

DEFAULT_MAX_FILE_SIZE = 4 << 30
"""``--max-file-size``'s default: 4 GiB."""

WINDOW_WAIT_S = 30.0
"""How long ``vdisplay run --window…`` waits for the app's window to be mapped."""


@dataclass(frozen=True)
class FilesOptions:
    """File transfers (protocol.md §9): ``--files DIR``, ``--no-files``, ``--viewers-upload``, ``--max-file-size``."""

    folder: Path | None = None
    """The transfer folder; ``None``: one made for the session."""
    enabled: bool = True
    viewers_upload: bool = False
    max_size: int = DEFAULT_MAX_FILE_SIZE

    @staticmethod
    def parse_size(text: str) -> int:
        """``"4G"``, ``"500M"``, ``"64K"`` (powers of 1024) or a number of bytes."""
        match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
        if match is None:
            raise UsageError(f"--max-file-size: {text!r} is not a size (bytes, or a number with K, M, G or T)")
        return int(match[1]) << (10 * " KMGT".index(match[2].upper() or " "))


@contextlib.contextmanager
def transfer_folder(options: FilesOptions) -> Iterator[TransferFolder | None]:
    """The session's transfer folder; a folder made for it is removed afterwards if left empty."""
    if not options.enabled:
        yield None
        return
    made = options.folder is None
    path = Path(tempfile.mkdtemp(prefix="impromptu-files-")) if options.folder is None else options.folder
    if not made and not path.exists():
        try:
            path.mkdir(mode=0o700)
        except OSError as exc:
            raise UsageError(f"--files: cannot make the folder {path}: {exc.strerror}") from None
    try:
        folder = TransferFolder(path, max_size=options.max_size)
    except BaseException:
        if made:
            shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        yield folder
    finally:
        folder.close()
        if made:
            # Nobody can resume into a folder made for this session once it ends: its partial uploads go, and the
            # folder with them if nothing else is left (never what viewers uploaded).
            with contextlib.suppress(OSError):
                for entry in os.scandir(path):
                    if PART_RE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                path.rmdir()


@dataclass(frozen=True)
class RecordOptions:
    """``--record FILE`` and ``--record-segment N``: the stream muxed into FILE as it is (no second encode)."""

    path: Path
    segment_s: float | None = None
    """Keep only about the last this many seconds; ``None``: everything."""

    @classmethod
    def parse(cls, path: Path | None, segment_s: float | None) -> RecordOptions | None:
        if path is None:
            if segment_s is not None:
                raise UsageError("--record-segment goes with --record FILE")
            return None
        if segment_s is not None and not segment_s > 0:
            raise UsageError(f"--record-segment {segment_s:g}: give a number of seconds above 0")
        codecs = available_codecs()
        # The encoder the session will pick is the first available one (encode/encoder.py).
        codec = {"libx264": "avc1", "libvpx": "vp8"}.get(codecs[0]) if codecs else None
        try:
            check_path(path, codec)
        except RecordError as exc:
            raise UsageError(f"--record: {exc}") from None
        return cls(path, segment_s)


@dataclass(frozen=True)
class JoinOptions:
    """``--signal URL``: join a standalone signaling server (docs/protocol.md §11) instead of serving one."""

    url: SignalUrl
    token: str
    name: str
    publish_links: bool = False
    thumbnail: bool = True
    fingerprint: Any = None
    """An ``aiohttp.Fingerprint`` to trust an https server by (``--tls-fingerprint``), or ``None``."""


@dataclass(frozen=True)
class SignalOptions:
    """``impromptu signal``."""

    host: str
    port: int
    token: str
    tls_cert: Path | None = None
    tls_key: Path | None = None
    health_file: Path | None = None


@dataclass(frozen=True)
class RunOptions:
    host: str
    port: int
    fps: int
    ice: IcePolicy
    tls_cert: Path | None = None
    tls_key: Path | None = None
    control: ControlMode = ControlMode.SHARED
    max_direct: int = MAX_PEERS
    windows: tuple[WindowSelector, ...] = ()
    """Windows to share (``--window``, ``--window-title``, ``--window-class``), one surface each, in this order;
    none: the whole display."""
    files: FilesOptions = field(default_factory=lambda: FilesOptions())
    metrics_token: str | None = None
    """``/metrics``'s bearer token; ``None``: derived from the link's control key."""
    join: JoinOptions | None = None
    health_file: Path | None = None
    record: RecordOptions | None = None

    @staticmethod
    def parse_size(text: str) -> tuple[int, int]:
        try:
            return parse_size(text)
        except ValueError as exc:
            raise UsageError(f"--size: {exc}") from exc

    @classmethod
    def parse(
        cls,
        *,
        fps: int,
        bind: str,
        ice_addresses: tuple[str, ...],
        ice_servers: tuple[str, ...],
        tls_cert: Path | None,
        tls_key: Path | None,
        one_controller: bool = False,
        max_direct: int = MAX_PEERS,
        window_ids: tuple[str, ...] = (),
        window_titles: tuple[str, ...] = (),
        window_classes: tuple[str, ...] = (),
        window_order: tuple[str, ...] = (),
        files: FilesOptions | None = None,
        metrics_token: str | None = None,
        join: JoinOptions | None = None,
        health_file: Path | None = None,
        ice_ports: str | None = None,
        ice_public_address: str | None = None,
        record: RecordOptions | None = None,
    ) -> RunOptions:
        host, port = parse_bind(bind)
        try:
            ice = IcePolicy.from_options(ice_addresses, ice_servers, ice_ports, ice_public_address)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        control = ControlMode.ONE if one_controller else ControlMode.SHARED
        given = {
            "--window": [WindowSelector(ids=(parse_window_id(text),)) for text in window_ids],
            "--window-title": [WindowSelector(title_regex=regex) for regex in window_titles],
            "--window-class": [WindowSelector(wm_class=name) for name in window_classes],
        }
        counts = {option: sum(1 for o in window_order if o == option) for option in given}
        if all(counts[option] == len(selectors) for option, selectors in given.items()):
            windows = tuple(given[option].pop(0) for option in window_order)  # in the order given
        else:  # the order is unknown (a value that looks like an option): each kind in turn
            windows = tuple(selector for selectors in given.values() for selector in selectors)
        if metrics_token is not None and not re.fullmatch(r"[\x21-\x7e]{16,256}", metrics_token):
            raise UsageError("--metrics-token: 16 to 256 printable ASCII characters without spaces")
        return cls(
            host,
            port,
            fps,
            ice,
            tls_cert,
            tls_key,
            control,
            max_direct,
            windows,
            files or FilesOptions(),
            metrics_token,
            join,
            health_file,
            record,
        )


def parse_window_id(text: str) -> int:
    """``"0x1a00004"`` (as ``impromptu windows`` prints it) or ``"27262980"`` → the window id."""
    try:
        window_id = int(text, 0)
    except ValueError:
        window_id = 0
    if not 0 < window_id < 1 << 32:
        raise UsageError(f"--window {text!r} is not a window id, e.g. 0x1a00004 (`impromptu windows` lists them)")
    return window_id


def resolve_windows(display: str, selectors: tuple[WindowSelector, ...], pid: int | None) -> tuple[WindowInfo, ...]:
    """The window each selector picks on ``display``. Without ``pid``, the one there now: ``WindowNotFound`` if
    there is none, and a ``UsageError`` if several match (sharing a window the user did not mean would show it: they
    pick one by id). With ``pid``, blocks until a window of that process tree is mapped for each (its topmost), for
    ``WINDOW_WAIT_S`` in all. Two selectors that pick the same window are a ``UsageError``."""
    found: list[WindowInfo] = []
    for selector in selectors:
        if pid is None:
            matches = find_windows(
                display, ids=selector.ids, title_regex=selector.title_regex, wm_class=selector.wm_class
            )
            if len(matches) > 1:
                shown = ", ".join(f"{w.id_hex} {w.title[:40]!r}" for w in reversed(matches[-4:]))
                more = f" and {len(matches) - 4} more" if len(matches) > 4 else ""
                raise UsageError(
                    f"{len(matches)} windows have a {selector.describe()} ({shown}{more}): "
                    "pick one with --window ID (`impromptu windows` lists them)"
                )
            window = matches[0]
        else:
            window = wait_for_window(display, selector, WINDOW_WAIT_S, pid)
        if any(w.id == window.id for w in found):
            raise UsageError(f"window {window.id_hex} was picked twice ({selector.describe()}): share it once")
        found.append(window)
    return tuple(found)


def parse_bind(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"``, ``"localhost:0"`` → host and port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--bind {text!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


@contextlib.asynccontextmanager
async def _serving(
    host: str, port: int, tls_cert: Path | None, tls_key: Path | None, lobby_token: str | None = None
) -> AsyncIterator[SignalingServer]:
    ssl_context, fingerprint = server_ssl_context(host, tls_cert, tls_key)
    server = SignalingServer(host, port, ssl_context, lobby_token)
    await server.start()
    try:
        if fingerprint:
            print(f"impromptu: HTTPS certificate SHA-256 fingerprint: {fingerprint}", file=sys.stderr, flush=True)
        yield server
    finally:
        await server.stop()


@dataclass
class _Signaling:
    """Where a desktop signals: its own embedded server, or its seat on a standalone one."""

    seat: DesktopSignaling
    page: str
    """The operator page's address: links are this plus ``#c=…``."""
    server: SignalingServer | None = None
    remote: RemoteSignaling | None = None


@contextlib.asynccontextmanager
async def _signaling(options: RunOptions) -> AsyncIterator[_Signaling]:
    if options.join is None:
        async with _serving(options.host, options.port, options.tls_cert, options.tls_key) as server:
            yield _Signaling(server, f"{server.scheme}://{link_host(options.host)}:{server.port}/", server=server)
        return
    join = options.join
    remote = RemoteSignaling(join.url, join.token, join.name, ssl=join.fingerprint)
    try:
        yield _Signaling(remote, join.url.page, remote=remote)
    finally:
        await remote.close()


class _StopSignals:
    """Turns SIGINT/SIGTERM into a future the run loop waits on (restoring the handlers afterwards)."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.received: asyncio.Future[int] = loop.create_future()
        self.interruptible: asyncio.Future[Any] | None = None
        """Work still starting up, which a signal cancels rather than waits for."""
        self._loop = loop
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self.received.done():
            self.received.set_result(128 + sig)
        if self.interruptible is not None and not self.interruptible.done():
            # Still starting (an X server that does not answer, say): give up on it rather than wait.
            self.interruptible.cancel()

    def close(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.remove_signal_handler(sig)


async def _share_until(
    signaling: _Signaling, display: str, options: RunOptions, app: App | None, stops: _StopSignals
) -> int:
    keys = LinkKeys.generate()
    remote = signaling.remote
    if remote is not None and options.join is not None and options.join.publish_links:
        remote.links = {"control": keys.control_fragment(), "view": keys.view_fragment()}
    app_wait: asyncio.Task[int] | None = None
    session: ShareSession | None = None
    recording: Recording | None = None
    stack = contextlib.AsyncExitStack()
    try:
        windows: tuple[WindowInfo, ...] = ()
        if options.windows:
            # vdisplay run: the app's own windows, once it maps them (racing its exit); share: those there now.
            pid = app.pid if app is not None else None
            finding = asyncio.ensure_future(in_daemon_thread(resolve_windows, display, options.windows, pid))
            stops.interruptible = finding  # a signal gives up waiting
            try:
                if app is not None:
                    app_wait = asyncio.ensure_future(app.wait())
                    await asyncio.wait({finding, app_wait}, return_when=asyncio.FIRST_COMPLETED)
                    if not finding.done():
                        finding.cancel()
                        wanted = " and ".join(selector.describe() for selector in options.windows)
                        raise AppError(
                            f"{app.command[0]} exited (status {app_wait.result()}) before its window ({wanted}) "
                            "was mapped"
                        )
                windows = await finding
            except asyncio.CancelledError:
                if stops.received.done():
                    return stops.received.result()
                raise
            finally:
                stops.interruptible = None
        folder = stack.enter_context(transfer_folder(options.files))
        session = ShareSession(
            display,
            keys,
            signaling.seat,
            ShareOptions(
                fps=options.fps,
                ice=options.ice,
                control=options.control,
                max_direct=options.max_direct,
                windows=windows,
                files=folder,
                viewers_upload=options.files.viewers_upload,
            ),
        )
        stops.interruptible = asyncio.ensure_future(session.start())
        try:
            await stops.interruptible
        except asyncio.CancelledError:
            if stops.received.done():
                return stops.received.result()
            raise
        finally:
            stops.interruptible = None
        page = signaling.page
        print(f"impromptu: sharing display {display} ({session.describe()})", file=sys.stderr, flush=True)
        if folder is not None:
            print(f"impromptu: files: uploads go to {folder.path}", file=sys.stderr, flush=True)
        if options.record is not None:
            recording = session.start_recording(options.record.path, options.record.segment_s)
            _print_recording(recording, len(session.surfaces))
        sharing = session
        server = signaling.server
        if server is not None:
            token = options.metrics_token or keys.metrics_token()
            server.serve_metrics(lambda: prometheus(sharing.stats_snapshot()), token)
            stack.callback(server.serve_metrics, None)
            print(f"impromptu: metrics: {page}metrics (Authorization: Bearer {token})", file=sys.stderr, flush=True)
        if remote is not None:
            assert options.join is not None
            _report_to_lobby(remote, session, options.join.thumbnail)
            published = " (its links published to the lobby)" if remote.links else ""
            print(
                f"impromptu: signaling: joining {remote.url.base} as {options.join.name!r}{published}",
                file=sys.stderr,
                flush=True,
            )
        print(f"Operator link: {page}#{keys.control_fragment()}", flush=True)
        print(f"View-only link: {page}#{keys.view_fragment()}", flush=True)
        await stack.enter_async_context(health.heartbeat(options.health_file, partial(_health, signaling, session)))
        waiters: set[asyncio.Future[Any]] = {stops.received, session.failed, session.ended}
        if remote is not None:
            waiters.add(remote.refused)
        if app is not None:
            if app_wait is None:
                app_wait = asyncio.ensure_future(app.wait())
            waiters.add(app_wait)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if stops.received.done():
            return stops.received.result()
        if session.failed.done():
            raise ImpromptuError(f"sharing stopped: {session.failed.result()}")
        if remote is not None and remote.refused.done():
            raise ImpromptuError(
                f"the signaling server at {remote.url.base} refused this desktop: {remote.refused.result()}"
            )
        if session.ended.done() and not (app_wait is not None and app_wait.done()):
            # Every shared window was closed: nothing is left to share, which is a normal end (status 0).
            print(f"impromptu: {session.ended.result()}; sharing ended", file=sys.stderr, flush=True)
            return 0
        assert app_wait is not None
        code = app_wait.result()
        logger.info("%s exited with status %d", app.command[0] if app else "app", code)
        return code
    finally:
        ending = sys.exc_info()[1]  # (what ends the run, if not a return)
        if app_wait is not None and not app_wait.done():
            app_wait.cancel()
        failed: RecordError | None = None
        if session is not None and recording is not None:
            try:  # (a recording that failed midway left the sharing running: only the exit status tells)
                await _end_recording(session, recording)
            except RecordError as exc:
                failed = exc
        if session is not None:
            await session.stop()
        await stack.aclose()
        if failed is not None:
            if ending is None:
                raise failed  # status 1, whatever the run's own status was
            print(f"impromptu: error: {failed}", file=sys.stderr, flush=True)  # (the other error follows)


def _print_recording(recording: Recording, surfaces: int) -> None:
    names = ", ".join(str(surface_path(recording.path, index)) for index in range(surfaces))
    kept = f" (keeping the last {recording.segment_s:g} s)" if recording.segment_s is not None else ""
    print(f"impromptu: recording to {names}{kept}", file=sys.stderr, flush=True)


async def _end_recording(session: ShareSession, recording: Recording) -> None:
    """Stop ``recording`` and say what it recorded; ``RecordError`` if it failed or recorded nothing."""
    await session.stop_recording(recording)
    assert recording.started_us is not None  # (else stop_recording raised)
    seconds = ((recording.ended_us or recording.started_us) - recording.started_us) / 1e6
    files = ", ".join(str(p) for p in recording.paths)
    print(f"impromptu: recorded {files} (about {seconds:.1f} s)", file=sys.stderr, flush=True)


def _report_to_lobby(remote: RemoteSignaling, session: ShareSession, thumbnails: bool) -> None:
    """What the desktop tells a standalone server's lobby about itself (docs/protocol.md §11)."""
    started = time.monotonic()

    def status() -> dict[str, Any]:
        first = next(iter(session.surfaces.values()))
        return {
            "width": first.config["width"],
            "height": first.config["height"],
            "viewers": session.viewers,
            "uptime": round(time.monotonic() - started),
            "surfaces": len(session.surfaces),
        }

    remote.status = status
    if thumbnails:
        remote.thumbnail = session.thumbnail


def _health(signaling: _Signaling, session: ShareSession) -> dict[str, Any]:
    state: dict[str, Any] = {"ok": not session.failed.done(), "viewers": session.viewers}
    remote = signaling.remote
    if remote is not None:
        state["signaling"] = "connected" if remote.connected.is_set() else "reconnecting"
        if remote.problem is not None:  # a refusal, not the network: someone has to act
            state.update(ok=False, problem=remote.problem)
    if session.failed.done():
        state["problem"] = str(session.failed.result())
    return state


async def run_signal(options: SignalOptions) -> int:
    """``impromptu signal``: the standalone page and signaling server with its lobby, until Ctrl-C or SIGTERM."""
    stops = _StopSignals()
    try:
        async with _serving(options.host, options.port, options.tls_cert, options.tls_key, options.token) as server:
            base = f"{server.scheme}://{link_host(options.host)}:{server.port}"
            lobby = server.lobby
            assert lobby is not None
            print(f"Lobby: {base}/#token={options.token}", flush=True)
            # The token through the environment, not argv: any user of the machine can read a process's arguments.
            print(
                f"impromptu: desktops join with: IMPROMPTU_TOKEN='{options.token}' impromptu vdisplay run "
                f"--signal {base} --name NAME -- APP",
                file=sys.stderr,
                flush=True,
            )
            beat = health.heartbeat(options.health_file, lambda: {"ok": True, "desktops": len(lobby.cards)})
            async with beat:
                code = await stops.received
            return 0 if code == 128 + signal.SIGINT else code
    finally:
        stops.close()


async def run_vdisplay(options: RunOptions, size: tuple[int, int], command: list[str]) -> int:
    stops = _StopSignals()
    try:
        async with _signaling(options) as server:
            xvfb = Xvfb(size)
            await asyncio.to_thread(xvfb.start)
            try:
                # The app gets none of impromptu's own settings: whoever controls it must not read the lobby token.
                env = {k: v for k, v in xvfb.env().items() if not k.startswith("IMPROMPTU_")}
                app = App(command, env)
                await app.start()
                try:
                    return await _share_until(server, xvfb.name, options, app, stops)
                finally:
                    await app.stop()
            finally:
                await asyncio.to_thread(xvfb.stop)
    finally:
        stops.close()


async def run_share(options: RunOptions, display: str) -> int:
    stops = _StopSignals()
    try:
        async with _signaling(options) as server:
            code = await _share_until(server, display, options, None, stops)
            return 0 if code == 128 + signal.SIGINT else code
    finally:
        stops.close()
