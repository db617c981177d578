"""File transfers end to end between a sharing session and the headless peer of ``impromptu send``/``fetch``
(impromptu/files/client.py) over real aiortc connections on loopback: uploads and downloads are byte-exact, who may
upload is the link's role, a connection dropped at random offsets many times never leaves anything under the final
name and the transfer resumes to completion, damaged data and hostile names are refused, the listing follows."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from impromptu.errors import FileTransferError
from impromptu.files import client
from impromptu.files.client import UploadState
from impromptu.files.folder import TransferFolder
from impromptu.files.service import MAX_PER_VIEWER
from impromptu.files.wire import LABEL, MAX_QUEUED, ChannelClosed, ChannelReader, close_when_sent, send_json, send_paced
from impromptu.link import ViewerLink
from impromptu.rtc.viewer import DesktopConnection
from tests.harness import wait_until
from tests.pyviewer import LOOPBACK, link, sharing


class Desktop:
    """A session with a transfer folder, and fresh headless connections to it."""

    def __init__(self, folder: Path, url: str, view_url: str) -> None:
        self.folder = folder
        self.url = url
        self.view_url = view_url
        self.lists: list[dict[str, Any]] = []
        """``file.list`` messages every connection made here received, in order."""
        self._conns: list[DesktopConnection] = []

    async def connect(self, url: str | None = None) -> DesktopConnection:
        def on_control(message: dict[str, Any]) -> None:
            if message.get("type") == "file.list":
                self.lists.append(message)

        conn = DesktopConnection(ViewerLink.parse(url or self.url), LOOPBACK, lambda data: None, on_control)
        self._conns.append(conn)
        await conn.connect()
        return conn

    async def close(self) -> None:
        for conn in self._conns:
            await conn.close()

    def visible(self) -> list[str]:
        """Names in the folder a user sees (not hidden)."""
        return sorted(n for n in os.listdir(self.folder) if not n.startswith("."))


@pytest.fixture
async def desktop(xvfb_display: str, tmp_path: Path) -> AsyncIterator[Desktop]:
    folder = tmp_path / "shared"
    folder.mkdir()
    async with sharing(xvfb_display, files=TransferFolder(folder)) as (session, server):
        d = Desktop(folder, link(session, server), link(session, server, control=False))
        try:
            yield d
        finally:
            await d.close()


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


async def test_uploads_and_downloads_are_byte_exact_and_listed(desktop: Desktop, tmp_path: Path) -> None:
    conn = await desktop.connect()
    await wait_until(lambda: bool(desktop.lists))
    assert desktop.lists[0]["enabled"] is True and desktop.lists[0]["upload"] is True
    assert desktop.lists[0]["files"] == []
    sources = {"empty.bin": b"", "small.txt": b"hello\n", "Zürich 東京 ✓.bin": payload(3 * 65536 + 17)}
    for name, data in sources.items():
        (tmp_path / name).write_bytes(data)
        assert await client.upload(conn, UploadState(tmp_path / name)) == name
        assert (desktop.folder / name).read_bytes() == data
    await wait_until(lambda: len(desktop.lists[-1]["files"]) == 3)
    assert {f["name"]: f["size"] for f in desktop.lists[-1]["files"]} == {n: len(d) for n, d in sources.items()}

    # The same name again: a free variant, unless asked to replace.
    assert await client.upload(conn, UploadState(tmp_path / "small.txt")) == "small (1).txt"
    (tmp_path / "small.txt").write_bytes(b"new\n")
    assert await client.upload(conn, UploadState(tmp_path / "small.txt"), replace=True) == "small.txt"
    assert (desktop.folder / "small.txt").read_bytes() == b"new\n"

    out = tmp_path / "out"
    out.mkdir()
    for name, data in sources.items():
        saved = await client.download(conn, name, out / name)
        assert saved.read_bytes() == (b"new\n" if name == "small.txt" else data)
    assert sorted(os.listdir(out)) == sorted(sources), "a partial download was left behind"


async def test_a_view_only_link_downloads_but_does_not_upload(desktop: Desktop, tmp_path: Path) -> None:
    (desktop.folder / "report.pdf").write_bytes(b"%PDF")
    viewer = await desktop.connect(desktop.view_url)
    await wait_until(lambda: bool(desktop.lists))
    assert desktop.lists[0]["upload"] is False
    assert [f["name"] for f in desktop.lists[0]["files"]] == ["report.pdf"]
    (tmp_path / "x.txt").write_bytes(b"x")
    with pytest.raises(FileTransferError, match="may not upload"):
        await client.upload(viewer, UploadState(tmp_path / "x.txt"))
    assert (await client.download(viewer, "report.pdf", tmp_path / "r.pdf")).read_bytes() == b"%PDF"
    assert desktop.visible() == ["report.pdf"]


async def test_connections_dropped_at_random_offsets_never_leave_a_partial_file_and_resume(
    desktop: Desktop, tmp_path: Path
) -> None:
    data = payload(8 << 20, seed=7)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    state = UploadState(source)
    rng = random.Random(42)
    drops: set[asyncio.Future[None]] = set()
    kills = 0
    for _ in range(8):
        conn = await desktop.connect()
        cut = rng.randrange(1, len(data))

        def drop_at(done: int, size: int, conn: DesktopConnection = conn, cut: int = cut) -> None:
            if done >= cut:
                drops.add(asyncio.ensure_future(conn.pc.close()))

        try:
            await client.upload(conn, state, progress=drop_at)
        except ChannelClosed:
            kills += 1
        assert desktop.visible() in ([], ["big.bin"])
        if desktop.visible():
            break  # the cut fell after the last byte was sent
        assert not (desktop.folder / "big.bin").exists(), "a partial file appeared under the final name"
    assert kills >= 3, "the connection was not dropped mid-transfer"
    conn = await desktop.connect()
    if not desktop.visible():
        resumed_from: list[int] = []
        await client.upload(conn, state, progress=lambda done, size: resumed_from.append(done))
        assert resumed_from[0] > 0, "the upload started again from zero instead of resuming"
    assert (desktop.folder / "big.bin").read_bytes() == data
    assert [n for n in os.listdir(desktop.folder) if n.startswith(".")] == [], "resumed data was left behind"

    # Downloads resume too, and the local file appears only once complete and verified.
    target = tmp_path / "copy.bin"
    for _ in range(3):
        conn = await desktop.connect()
        cut = rng.randrange(1, len(data))

        def drop_later(done: int, size: int, conn: DesktopConnection = conn, cut: int = cut) -> None:
            if done >= cut:
                drops.add(asyncio.ensure_future(conn.pc.close()))

        with pytest.raises(ChannelClosed):
            await client.download(conn, "big.bin", target, progress=drop_later)
        assert not target.exists()
    conn = await desktop.connect()
    await client.download(conn, "big.bin", target)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()


async def raw_channel(conn: DesktopConnection) -> ChannelReader:
    channel = conn.pc.createDataChannel(LABEL, ordered=True)
    reader = ChannelReader(channel)
    opened = asyncio.Event()
    channel.on("open", opened.set)
    await asyncio.wait_for(opened.wait(), 10)
    return reader


async def test_damaged_data_is_refused_and_nothing_is_committed(desktop: Desktop) -> None:
    conn = await desktop.connect()
    data = payload(200_000)
    reader = await raw_channel(conn)
    send_json(reader.channel, {"type": "upload", "id": "ab" * 16, "name": "d.bin", "size": len(data)})
    assert (await reader.next_text())["type"] == "ready"
    damaged = bytearray(data)
    damaged[123_456] ^= 0x01
    for start in range(0, len(damaged), 65536):
        reader.channel.send(bytes(damaged[start : start + 65536]))
    send_json(reader.channel, {"type": "end", "sha256": hashlib.sha256(data).hexdigest()})
    answer = await reader.next_text()
    assert answer["type"] == "error" and "damaged" in answer["reason"]
    await wait_until(lambda: os.listdir(desktop.folder) == [])
    await close_when_sent(reader.channel)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        ({"type": "upload", "id": "ab" * 16, "name": "../escape", "size": 1}, "/"),
        ({"type": "upload", "id": "ab" * 16, "name": "/etc/passwd", "size": 1}, "/"),
        ({"type": "upload", "id": "ab" * 16, "name": "..", "size": 1}, ".."),
        ({"type": "upload", "id": "ab" * 16, "name": "a\x00b", "size": 1}, ""),
        ({"type": "upload", "id": "../../x", "name": "ok.txt", "size": 1}, ""),
        ({"type": "upload", "id": "ab" * 16, "name": "ok.txt", "size": -1}, ""),
        ({"type": "download", "name": "../../etc/passwd", "offset": 0}, "/"),
        ({"type": "download", "name": "outside", "offset": 0}, ""),
        ({"type": "hello"}, "upload or download"),
    ],
)
async def test_hostile_requests_are_refused(desktop: Desktop, request_: dict[str, Any], reason: str) -> None:
    os.symlink("/etc/hostname", desktop.folder / "outside")
    conn = await desktop.connect()
    reader = await raw_channel(conn)
    send_json(reader.channel, request_)
    answer = await reader.next_text()
    assert answer["type"] == "error" and reason in answer["reason"]
    assert len(answer["reason"]) <= 200
    assert sorted(os.listdir(desktop.folder)) == ["outside"]
    assert "escape" not in os.listdir(desktop.folder.parent)


async def test_an_upload_asked_again_after_its_commit_is_not_saved_twice(desktop: Desktop, tmp_path: Path) -> None:
    """The connection dropped after ``end``, before the page saw ``done``: it asks again with the same id."""
    (tmp_path / "once.txt").write_bytes(b"once")
    conn = await desktop.connect()
    state = UploadState(tmp_path / "once.txt")
    assert await client.upload(conn, state) == "once.txt"
    assert await client.upload(conn, state) == "once.txt"
    assert desktop.visible() == ["once.txt"]


async def test_a_folder_of_many_long_names_is_listed_cut_short_and_viewers_still_connect(
    xvfb_display: str, tmp_path: Path
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(1000):
        (folder / f"{n:04d} {'長い名前のファイル' * 4}.txt").touch()  # 120 bytes of UTF-8 each
    async with sharing(xvfb_display, files=TransferFolder(folder)) as (session, server):
        d = Desktop(folder, link(session, server), link(session, server, control=False))
        try:
            await d.connect()
            await wait_until(lambda: bool(d.lists))
            listed = d.lists[0]
            assert listed["truncated"] is True and 100 < len(listed["files"]) < 1000
            assert listed["files"][0]["name"].startswith("0000 長い")
        finally:
            await d.close()


async def test_one_viewer_cannot_run_unbounded_transfers(desktop: Desktop) -> None:
    conn = await desktop.connect()
    readers = [await raw_channel(conn) for _ in range(MAX_PER_VIEWER + 1)]
    for n, reader in enumerate(readers):
        send_json(reader.channel, {"type": "upload", "id": f"{n:032x}", "name": f"f{n}.bin", "size": 10})
    answers = [await reader.next_text() for reader in readers]
    assert [a["type"] for a in answers].count("ready") == MAX_PER_VIEWER
    assert "too many transfers" in answers[-1]["reason"]


async def test_data_sent_where_nothing_reads_it_closes_the_channel(desktop: Desktop) -> None:
    (desktop.folder / "big.bin").write_bytes(b"\0" * (64 << 20))
    conn = await desktop.connect()
    reader = await raw_channel(conn)
    closed = asyncio.Event()
    reader.channel.on("close", closed.set)
    send_json(reader.channel, {"type": "download", "name": "big.bin", "offset": 0})
    assert (await reader.next_text())["type"] == "file"
    junk = b"\0" * 65536
    with contextlib.suppress(ChannelClosed):
        for _ in range((MAX_QUEUED >> 16) + 64):  # past what the desktop holds unread
            await send_paced(reader.channel, junk)
    await asyncio.wait_for(closed.wait(), 30)
