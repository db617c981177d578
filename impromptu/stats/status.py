"""``impromptu status``: join a shared desktop as a headless viewer, ask it for its statistics
(``stats.request`` → ``stats.snapshot``, docs/protocol.md §10) and print them, once or every second."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from impromptu.errors import ImpromptuError
from impromptu.link import ViewerLink
from impromptu.rtc.ice import IcePolicy
from impromptu.rtc.viewer import DesktopConnection
from impromptu.stats.report import format_status

__all__ = ["run_status"]

ANSWER_TIMEOUT_S = 10.0
"""How long the desktop has to answer a ``stats.request``."""

WATCH_INTERVAL_S = 1.0


async def run_status(
    url: str, ice: IcePolicy, ssl_context: Any = None, as_json: bool = False, watch: bool = False
) -> None:
    """Print the desktop's statistics (``--json``: one JSON object per line); with ``watch``, again every second
    until cancelled (Ctrl-C)."""
    snapshots: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def on_control(message: dict[str, Any]) -> None:
        if message.get("type") == "stats.snapshot":
            snapshots.put_nowait(message)

    conn = DesktopConnection(ViewerLink.parse(url), ice, lambda data: None, on_control, ssl_context)
    try:
        await conn.connect()
        while True:
            conn.send_control({"type": "stats.request"})
            try:
                snapshot = await asyncio.wait_for(snapshots.get(), ANSWER_TIMEOUT_S)
            except TimeoutError:
                raise ImpromptuError(
                    f"the desktop did not answer a statistics request within {ANSWER_TIMEOUT_S:.0f} s "
                    "(is it an older impromptu?)"
                ) from None
            snapshot.pop("type", None)
            if as_json:
                print(json.dumps(snapshot, separators=(",", ":")), flush=True)
            else:
                if watch and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")  # a fresh screen each second, as `watch` does
                print(format_status(snapshot, conn.peer_id) + ("\n" if watch else ""), flush=True)
            if not watch:
                return
            await asyncio.sleep(WATCH_INTERVAL_S)
    finally:
        await conn.close()
