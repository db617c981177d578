"""``FileService``: the desktop's end of file transfers (protocol.md §9) — the listing sent to viewers, and one
coroutine per ``file`` channel a viewer opens, on top of ``TransferFolder`` (which owns every rule about the disk).

Disk work that can take long (hashing what an interrupted upload left, fsync, hashing the head of a resumed
download) runs in a thread; writes and reads of one chunk run on the event loop, which bounds memory: a
chunk is on disk before the next is read from the network.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiortc import RTCDataChannel

from impromptu.errors import FileTransferError, ProtocolError
from impromptu.files.folder import Download, TransferFolder, Upload
from impromptu.files.wire import (
    CHUNK,
    MAX_REASON,
    ChannelClosed,
    ChannelReader,
    close_when_sent,
    refuse,
    send_json,
    send_paced,
)

__all__ = ["FileService"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

EXPIRE_EVERY_S = 60.0
"""How often suspended uploads past their time are deleted."""

MAX_PER_VIEWER = 8
"""Transfers one viewer may run at once (a page runs 4); more are refused."""

MAX_TRANSFERS = 32
"""Transfers all viewers together may run at once."""

IDLE_S = 120.0
"""A transfer whose other side says nothing for this long is dropped (an upload stays resumable)."""

LISTING_BYTES = 64 << 10
"""Most bytes of file entries in one ``file.list``: a folder of many long names is cut short (``truncated``)."""

LISTING_MAX_AGE_S = 2.0
"""A listing older than this is made again when a viewer asks (at most this often, whoever asks)."""

FILE_THREADS = 2
"""Threads for slow file work (hashing what is held, fsync, scanning the folder): never the event loop's."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_SIZE = (1 << 53) - 1  # JSON numbers pages can send exactly


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_SIZE


class FileService:
    """File transfers into and out of ``folder``. ``on_change()`` is called after an upload commits (the session
    sends every viewer the new listing)."""

    def __init__(self, folder: TransferFolder, on_change: Callable[[], None]) -> None:
        self.folder = folder
        self._on_change = on_change
        self._tasks: set[asyncio.Task[None]] = set()
        self._committed: dict[tuple[str, int], tuple[str, float]] = {}
        """Uploads committed lately, by (id, size): the name each got, and when."""
        self._expiry: asyncio.TimerHandle | None = None
        self._closed = False
        self._pool = concurrent.futures.ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="impromptu-files")
        self._running: dict[str, int] = {}
        """Transfers under way per viewer."""
        self._files: list[dict[str, Any]] = []
        self._truncated = False
        self._listed_at = -LISTING_MAX_AGE_S
        self._relisting: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Make the first listing, and delete expired partial uploads now and every ``EXPIRE_EVERY_S``."""
        await self.refresh()
        self._schedule_expiry()

    def listing(self, may_upload: bool) -> dict[str, Any]:
        """The ``file.list`` message for a viewer (§9), from the latest listing (``refresh`` makes a new one)."""
        message: dict[str, Any] = {
            "type": "file.list",
            "enabled": True,
            "files": self._files,
            "upload": may_upload,
            "max_size": self.folder.max_size,
        }
        if self._truncated:
            message["truncated"] = True
        return message

    async def refresh(self, max_age_s: float = 0.0) -> None:
        """List the folder again (in a thread), unless the listing is younger than ``max_age_s``; one listing at
        a time, whoever asks."""
        if self._relisting is None:
            if time.monotonic() - self._listed_at < max_age_s:
                return
            self._relisting = asyncio.ensure_future(self._relist())
        relisting = self._relisting
        try:
            await asyncio.shield(relisting)
        finally:
            if relisting.done() and self._relisting is relisting:
                self._relisting = None

    async def _relist(self) -> None:
        try:
            entries = await self._in_thread(self.folder.listing)
        except (OSError, FileTransferError) as exc:
            logger.warning("cannot list the transfer folder: %s", exc)
            return
        files, used = [], 0
        for entry in entries:
            used += len(entry.name.encode()) + 48  # the name and the rest of its JSON object
            if used > LISTING_BYTES:
                break
            files.append({"name": entry.name, "size": entry.size, "mtime": int(entry.mtime)})
        self._files, self._truncated = files, len(files) < len(entries)
        self._listed_at = time.monotonic()

    def accept(self, channel: RTCDataChannel, viewer: str, may_upload: bool) -> None:
        """Serve one ``file`` channel ``viewer`` opened (or refuse it: too many at once)."""
        if self._closed:
            channel.close()
            return
        if self._running.get(viewer, 0) >= MAX_PER_VIEWER or sum(self._running.values()) >= MAX_TRANSFERS:
            task = asyncio.ensure_future(refuse(channel, "too many transfers at once; try again when one ends"))
        else:
            self._running[viewer] = self._running.get(viewer, 0) + 1
            task = asyncio.ensure_future(self._serve(ChannelReader(channel), viewer, may_upload))
            task.add_done_callback(functools.partial(self._ended, viewer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ended(self, viewer: str, task: asyncio.Future[None]) -> None:
        left = self._running.get(viewer, 0) - 1
        if left > 0:
            self._running[viewer] = left
        else:
            self._running.pop(viewer, None)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    async def close(self) -> None:
        """Stop every transfer (uploads in progress are suspended, resumable) and close the folder."""
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.folder.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one channel -------------------------------------------------------------------------------------------

    async def _serve(self, reader: ChannelReader, viewer: str, may_upload: bool) -> None:
        channel = reader.channel
        try:
            request = await reader.next_text(IDLE_S)
            kind = request["type"]
            if kind == "upload":
                if not may_upload:
                    raise FileTransferError("this link may not upload files to this desktop")
                await self._upload(reader, request, viewer)
            elif kind == "download":
                await self._download(channel, request, viewer)
            else:
                raise ProtocolError(f"a file channel must start with upload or download, not {kind[:40]!r}")
        except ChannelClosed:
            return
        except (FileTransferError, ProtocolError) as exc:
            logger.info("viewer %s: file transfer refused: %s", viewer, exc)
            with contextlib.suppress(ChannelClosed):
                send_json(channel, {"type": "error", "reason": str(exc)[:MAX_REASON]})
        except asyncio.CancelledError:
            channel.close()
            raise
        except Exception:
            logger.exception("viewer %s: file transfer failed", viewer)
            with contextlib.suppress(ChannelClosed):
                send_json(channel, {"type": "error", "reason": "the desktop failed; see its log"})
        await close_when_sent(channel)

    async def _upload(self, reader: ChannelReader, request: dict[str, Any], viewer: str) -> None:
        transfer_id, name, size, replace = (request.get(k) for k in ("id", "name", "size", "replace"))
        if not isinstance(transfer_id, str) or not isinstance(name, str) or not _is_count(size):
            raise ProtocolError("upload needs an id, a name and a size")
        assert isinstance(size, int)
        earlier = self._committed.get((transfer_id, size))
        if earlier is not None and time.monotonic() - earlier[1] < self.folder.resume_s:
            # Committed already: the page lost our `done` with its connection, and asks again.
            send_json(reader.channel, {"type": "done", "name": earlier[0]})
            return
        # The same page coming back on a new connection may be faster than we notice its old one died: its upload
        # moves to this channel (the id is 128 random bits only that page knows).
        upload: Upload = await self._in_thread(
            functools.partial(self.folder.begin_upload, transfer_id, name, size, takeover=True)
        )
        committed = False
        try:
            send_json(reader.channel, {"type": "ready", "offset": upload.offset})
            logger.info("viewer %s: receiving %r (%d bytes, from %d)", viewer, name[:80], size, upload.offset)
            while True:
                message = await reader.next(IDLE_S)
                if isinstance(message, bytes):
                    upload.write(message)  # past the announced size: FileTransferError, and the data is deleted
                    continue
                if message["type"] == "cancel":
                    upload.cancel()
                    logger.info("viewer %s: cancelled the upload of %r", viewer, name[:80])
                    return
                if message["type"] != "end":
                    raise ProtocolError(f"unexpected {message['type'][:40]!r} during an upload")
                digest = message.get("sha256")
                if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                    raise ProtocolError("end needs the file's SHA-256 in lowercase hex")
                final = await self._in_thread(upload.commit, digest, replace is True)
                committed = True
                self._remember(transfer_id, size, final)
                logger.info("viewer %s: saved %r", viewer, final[:80])
                send_json(reader.channel, {"type": "done", "name": final})
                await self.refresh()
                self._on_change()
                return
        except ChannelClosed:
            upload.suspend()  # the connection dropped: the same viewer may resume (§9)
            logger.info("viewer %s: upload of %r interrupted at %d bytes", viewer, name[:80], upload.offset)
            raise
        except (FileTransferError, ProtocolError):
            if not committed:
                upload.cancel()
            raise
        except BaseException:
            if not committed:
                upload.suspend()
            raise

    async def _download(self, channel: RTCDataChannel, request: dict[str, Any], viewer: str) -> None:
        name, offset = request.get("name"), request.get("offset", 0)
        if not isinstance(name, str) or not _is_count(offset):
            raise ProtocolError("download needs a name and an offset")
        assert isinstance(offset, int)
        download: Download = await self._in_thread(self.folder.open_download, name, offset)
        try:
            send_json(channel, {"type": "file", "name": download.name, "size": download.size})
            logger.info("viewer %s: sending %r (%d bytes, from %d)", viewer, name[:80], download.size, offset)
            while data := download.read(CHUNK):
                await send_paced(channel, data)
            send_json(channel, {"type": "end", "sha256": download.sha256()})
        finally:
            download.close()

    def _remember(self, transfer_id: str, size: int, name: str) -> None:
        now = time.monotonic()
        self._committed = {k: v for k, v in self._committed.items() if now - v[1] < self.folder.resume_s}
        self._committed[(transfer_id, size)] = (name, now)

    def _schedule_expiry(self) -> None:
        if self._closed:
            return
        task = asyncio.ensure_future(self._expire())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._expiry = asyncio.get_running_loop().call_later(EXPIRE_EVERY_S, self._schedule_expiry)

    async def _expire(self) -> None:
        try:
            await self._in_thread(self.folder.expire)
        except (OSError, FileTransferError) as exc:
            logger.warning("could not delete expired partial uploads: %s", exc)
