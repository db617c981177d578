"""A peer that ignores the largest message the desktop announces has its connection aborted (impromptu/rtc/limits.py)
before aiortc assembles more than a few megabytes of it; honest messages up to the announced size still arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from impromptu.files.folder import TransferFolder
from impromptu.files.wire import send_json
from impromptu.link import ViewerLink
from impromptu.rtc.limits import MAX_REASSEMBLY
from impromptu.rtc.viewer import DesktopConnection
from tests.harness import wait_until
from tests.pyviewer import LOOPBACK, link, sharing
from tests.test_files_session import raw_channel


@pytest.fixture
async def conn(xvfb_display: str, tmp_path: Path) -> AsyncIterator[DesktopConnection]:
    async with sharing(xvfb_display, files=TransferFolder(tmp_path)) as (session, server):
        c = DesktopConnection(ViewerLink.parse(link(session, server)), LOOPBACK, lambda data: None, lambda m: None)
        await c.connect()
        try:
            yield c
        finally:
            await c.close()


async def test_an_oversized_message_aborts_the_connection(conn: DesktopConnection) -> None:
    reader = await raw_channel(conn)
    answers: list[Any] = []
    send_json(reader.channel, {"type": "upload", "id": "cd" * 16, "name": "x.bin", "size": 1 << 30})
    answers.append(await reader.next_text())
    assert answers[0]["type"] == "ready"
    reader.channel.send(b"\0" * 65536)  # an honest chunk
    conn.pc.sctp._remote_max_message_size = None  # what a peer ignoring the desktop's limit does
    reader.channel.send(b"\0" * (3 * MAX_REASSEMBLY))
    await wait_until(lambda: conn.pc.connectionState in ("failed", "closed") or conn.pc.sctp.state == "closed")
