"""A headless viewer's end of file transfers (protocol.md §9), for ``impromptu send`` and ``impromptu fetch``:
the same requests a page makes, over a ``DesktopConnection``, resuming across dropped connections.

Downloads are as careful with the local disk as the desktop is with its folder: the data goes to a hidden file
beside the destination, its SHA-256 is checked, and only then does it take the destination's name.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impromptu.errors import FileTransferError, ImpromptuError, ProtocolError, UsageError
from impromptu.files.wire import CHUNK, LABEL, ChannelClosed, ChannelReader, close_when_sent, send_json, send_paced
from impromptu.rtc.viewer import DesktopConnection

__all__ = ["Progress", "download", "upload"]

logger = logging.getLogger(__name__)

HASH_BLOCK = 1 << 20

Progress = Callable[[int, int], None]
"""``progress(done, size)``: bytes of the file the other side has (so far), and the file's size."""


def _ignore(done: int, size: int) -> None:
    pass


@dataclass
class UploadState:
    """What makes a later attempt resume the same upload: keep it across reconnections."""

    path: Path
    transfer_id: str = field(default_factory=lambda: secrets.token_hex(16))


async def upload(
    conn: DesktopConnection, state: UploadState, *, replace: bool = False, progress: Progress = _ignore
) -> str:
    """Upload ``state.path`` into the desktop's folder; the name it got there. ``ChannelClosed`` if the connection
    dropped (call again, on a new connection, with the same ``state`` to resume); ``FileTransferError`` if the
    desktop refused or the file changed meanwhile."""
    path = state.path
    size = path.stat().st_size
    reader = await _open(conn)
    channel = reader.channel
    try:
        send_json(
            channel, {"type": "upload", "id": state.transfer_id, "name": path.name, "size": size, "replace": replace}
        )
        answer = await reader.next_text()
        _raise_if_error(answer)
        if answer["type"] == "done":  # committed by an earlier attempt whose `done` was lost
            progress(size, size)
            return _done_name(answer)
        if answer["type"] != "ready":
            raise ProtocolError(f"the desktop answered {answer['type'][:40]!r}, not 'ready'")
        offset = answer.get("offset")
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= size:
            raise ProtocolError("the desktop answered with an impossible offset")
        digest = hashlib.sha256()
        with path.open("rb") as file:
            _hash_head(file, offset, digest)
            sent = offset
            progress(sent, size)
            while sent < size:
                data = file.read(min(CHUNK, size - sent))
                if not data:
                    raise FileTransferError(f"{path} got shorter while it was being sent")
                digest.update(data)
                await send_paced(channel, data)
                sent += len(data)
                progress(max(sent - channel.bufferedAmount, offset), size)
        send_json(channel, {"type": "end", "sha256": digest.hexdigest()})
        done = await _answer(reader, "done")
        progress(size, size)
        return _done_name(done)
    finally:
        await close_when_sent(channel)


async def download(conn: DesktopConnection, name: str, destination: Path, *, progress: Progress = _ignore) -> Path:
    """Download ``name`` from the desktop's folder to ``destination`` (a file path; an existing file there is
    replaced only once the new one is complete and verified). ``ChannelClosed`` if the connection dropped: call
    again to resume from what arrived. ``FileTransferError`` if the desktop refused or the data did not match."""
    partial = destination.with_name(f".{destination.name}.impromptu-part")
    with os.fdopen(os.open(partial, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644), "r+b") as file:
        held = file.seek(0, os.SEEK_END)
        reader = await _open(conn)
        channel = reader.channel
        try:
            send_json(channel, {"type": "download", "name": name, "offset": held})
            header = await _answer(reader, "file")
            size = header.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < held:
                raise ProtocolError("the desktop announced an impossible size")
            digest = hashlib.sha256()
            file.seek(0)
            _hash_head(file, held, digest)
            received = held
            progress(received, size)
            while True:
                message = await reader.next()
                if isinstance(message, bytes):
                    received += len(message)
                    if received > size:
                        raise ProtocolError("the desktop sent more than the file's size")
                    file.write(message)
                    digest.update(message)
                    progress(received, size)
                    continue
                _raise_if_error(message)
                if message["type"] != "end":
                    raise ProtocolError(f"unexpected {message['type'][:40]!r} during a download")
                break
            if received != size or message.get("sha256") != digest.hexdigest():
                os.unlink(partial)
                raise FileTransferError(f"{name} arrived damaged (size or SHA-256 mismatch); nothing was saved")
            file.flush()
            os.fsync(file.fileno())
        finally:
            await close_when_sent(channel)
    os.replace(partial, destination)
    return destination


async def _open(conn: DesktopConnection) -> ChannelReader:
    if not conn.is_open:
        raise ChannelClosed()
    channel = conn.pc.createDataChannel(LABEL, ordered=True)
    reader = ChannelReader(channel)
    opened = asyncio.Event()
    channel.on("open", opened.set)
    channel.on("close", opened.set)
    await opened.wait()
    if channel.readyState != "open":
        raise ChannelClosed()
    return reader


async def _answer(reader: ChannelReader, expected: str) -> dict[str, Any]:
    message = await reader.next_text()
    _raise_if_error(message)
    if message["type"] != expected:
        raise ProtocolError(f"the desktop answered {message['type'][:40]!r}, not {expected!r}")
    return message


def _done_name(done: dict[str, Any]) -> str:
    name = done.get("name")
    if not isinstance(name, str):
        raise ProtocolError("the desktop's done has no name")
    return name


def _raise_if_error(message: dict[str, Any]) -> None:
    if message["type"] == "error":
        raise FileTransferError(f"the desktop refused: {str(message.get('reason', ''))[:200]}")


def _hash_head(file: Any, length: int, digest: Any) -> None:
    """Hash the first ``length`` bytes of ``file`` (positioned at 0), leaving it positioned after them."""
    file.seek(0)
    left = length
    while left:
        block = file.read(min(HASH_BLOCK, left))
        if not block:
            raise FileTransferError(f"{getattr(file, 'name', 'the file')} got shorter while it was being sent")
        digest.update(block)
        left -= len(block)


async def with_retries(
    attempt: Callable[[DesktopConnection], Awaitable[Any]],
    connect: Callable[[], Awaitable[DesktopConnection]],
    attempts: int,
) -> Any:
    """Run ``attempt(conn)`` on a fresh connection, again (resuming) each time the connection drops, up to
    ``attempts`` times in all."""
    for number in range(1, attempts + 1):
        conn = await connect()
        try:
            return await attempt(conn)
        except ChannelClosed:
            if number == attempts:
                raise ImpromptuError(f"the connection to the desktop dropped {attempts} times; giving up") from None
            logger.info("the connection dropped; resuming (attempt %d of %d)", number + 1, attempts)
        finally:
            await conn.close()
    raise AssertionError("unreachable")


ATTEMPTS = 5
"""Connections ``send`` and ``fetch`` try before giving up, resuming each time."""


class ProgressLine:
    """``name  42%  12.5 MB/s  ETA 0:07`` on a terminal (redrawn in place), or a line every 10 % otherwise."""

    def __init__(self, name: str, out: Any = None) -> None:
        self._name = name if len(name) <= 40 else name[:39] + "…"
        self._out = out or sys.stderr
        self._tty = bool(getattr(self._out, "isatty", lambda: False)())
        self._clock = time.monotonic
        self._start = self._clock()
        self._first: int | None = None
        self._shown = -1.0
        self._last_decile = -1

    def __call__(self, done: int, size: int) -> None:
        now = self._clock()
        if self._first is None:
            self._first, self._start = done, now
        fraction = done / size if size else 1.0
        elapsed = now - self._start
        rate = (done - self._first) / elapsed if elapsed > 0 else 0.0
        eta = (size - done) / rate if rate > 0 else None
        eta_text = "--:--" if eta is None else f"{int(eta) // 60}:{int(eta) % 60:02d}"
        line = f"{self._name}  {fraction:4.0%}  {rate / 1e6:6.1f} MB/s  ETA {eta_text}"
        if self._tty:
            if now - self._shown >= 0.1 or done == size:
                self._shown = now
                print(f"\r{line}", end="\n" if done == size else "", file=self._out, flush=True)
        elif int(fraction * 10) != self._last_decile:
            self._last_decile = int(fraction * 10)
            print(line, file=self._out, flush=True)


async def _connector(url: str, ice: Any, ssl_context: Any) -> Callable[[], Awaitable[DesktopConnection]]:
    from impromptu.link import ViewerLink

    link = ViewerLink.parse(url)

    async def connect() -> DesktopConnection:
        conn = DesktopConnection(link, ice, lambda data: None, lambda message: None, ssl_context)
        try:
            await conn.connect()
        except BaseException:
            await conn.close()
            raise
        return conn

    return connect


async def run_send(url: str, paths: list[Path], ice: Any, ssl_context: Any = None, replace: bool = False) -> list[str]:
    """``impromptu send``: upload each file in turn; the names they got on the desktop."""
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path} is not a file")
    connect = await _connector(url, ice, ssl_context)
    names = []
    for path in paths:
        state = UploadState(path)
        show = ProgressLine(path.name)

        async def attempt(conn: DesktopConnection, state: UploadState = state, show: ProgressLine = show) -> str:
            return await upload(conn, state, replace=replace, progress=show)

        names.append(await with_retries(attempt, connect, ATTEMPTS))
    return names


async def run_fetch(url: str, name: str, output: Path, ice: Any, ssl_context: Any = None) -> Path:
    """``impromptu fetch``: download ``name`` to ``output`` (a folder: the file keeps its name there)."""
    destination = output / name if await asyncio.to_thread(output.is_dir) else output
    if not await asyncio.to_thread(destination.parent.is_dir):
        raise UsageError(f"--output: {destination.parent} is not a folder")
    connect = await _connector(url, ice, ssl_context)
    show = ProgressLine(name)

    async def attempt(conn: DesktopConnection) -> Path:
        return await download(conn, name, destination, progress=show)

    result: Path = await with_retries(attempt, connect, ATTEMPTS)
    return result
