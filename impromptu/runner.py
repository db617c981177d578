"""Process lifecycle for the CLI commands: server, display, app and session up in order, down in reverse, on
the app's exit, Ctrl-C or SIGTERM — leaving no process, display or socket behind."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impromptu.control import ControlMode
from impromptu.display import App, Xvfb, parse_size
from impromptu.errors import ImpromptuError, UsageError
from impromptu.link import LinkKeys
from impromptu.rtc import IcePolicy
from impromptu.rtc.ice import lan_addresses
from impromptu.session import MAX_PEERS, ShareOptions, ShareSession
from impromptu.signaling import SignalingServer
from impromptu.tls import server_ssl_context

logger = logging.getLogger(__name__)


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
    ) -> RunOptions:
        host, port = parse_bind(bind)
        try:
            ice = IcePolicy(addresses=ice_addresses, servers=ice_servers)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        control = ControlMode.ONE if one_controller else ControlMode.SHARED
        return cls(host, port, fps, ice, tls_cert, tls_key, control, max_direct)


def parse_bind(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"``, ``"localhost:0"`` → host and port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--bind {text!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def _url_host(host: str) -> str:
    """The host to print in the link: a wildcard bind is reached through one of this machine's addresses."""
    if host in ("0.0.0.0", "::", ""):
        addresses = lan_addresses()
        host = addresses[0] if addresses else "127.0.0.1"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host


@contextlib.asynccontextmanager
async def _serving(options: RunOptions) -> AsyncIterator[SignalingServer]:
    ssl_context, fingerprint = server_ssl_context(options.host, options.tls_cert, options.tls_key)
    server = SignalingServer(options.host, options.port, ssl_context)
    await server.start()
    try:
        if fingerprint:
            print(f"impromptu: HTTPS certificate SHA-256 fingerprint: {fingerprint}", file=sys.stderr, flush=True)
        yield server
    finally:
        await server.stop()


class _StopSignals:
    """Turns SIGINT/SIGTERM into a future the run loop waits on (restoring the handlers afterwards)."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.received: asyncio.Future[int] = loop.create_future()
        self.interruptible: asyncio.Task[None] | None = None
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
    server: SignalingServer, display: str, options: RunOptions, app: App | None, stops: _StopSignals
) -> int:
    keys = LinkKeys.generate()
    session = ShareSession(
        display,
        keys,
        server,
        ShareOptions(fps=options.fps, ice=options.ice, control=options.control, max_direct=options.max_direct),
    )
    app_wait: asyncio.Task[int] | None = None
    try:
        stops.interruptible = asyncio.ensure_future(session.start())
        try:
            await stops.interruptible
        except asyncio.CancelledError:
            if stops.received.done():
                return stops.received.result()
            raise
        finally:
            stops.interruptible = None
        base = f"{server.scheme}://{_url_host(options.host)}:{server.port}/"
        print(f"impromptu: sharing display {display} ({session.describe()})", file=sys.stderr, flush=True)
        print(f"Operator link: {base}#{keys.control_fragment()}", flush=True)
        print(f"View-only link: {base}#{keys.view_fragment()}", flush=True)
        waiters: set[asyncio.Future[Any]] = {stops.received, session.failed}
        if app is not None:
            app_wait = asyncio.ensure_future(app.wait())
            waiters.add(app_wait)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if stops.received.done():
            return stops.received.result()
        if session.failed.done():
            raise ImpromptuError(f"sharing stopped: {session.failed.result()}")
        assert app_wait is not None
        code = app_wait.result()
        logger.info("%s exited with status %d", app.command[0] if app else "app", code)
        return code
    finally:
        if app_wait is not None and not app_wait.done():
            app_wait.cancel()
        await session.stop()


async def run_vdisplay(options: RunOptions, size: tuple[int, int], command: list[str]) -> int:
    stops = _StopSignals()
    try:
        async with _serving(options) as server:
            xvfb = Xvfb(size)
            await asyncio.to_thread(xvfb.start)
            try:
                app = App(command, xvfb.env())
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
        async with _serving(options) as server:
            code = await _share_until(server, display, options, None, stops)
            return 0 if code == 128 + signal.SIGINT else code
    finally:
        stops.close()
