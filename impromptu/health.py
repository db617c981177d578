"""A heartbeat file for container health checks: ``signal`` and the desktop commands rewrite it every few seconds
(``--health-file``, ``IMPROMPTU_HEALTH_FILE``) with how they are; ``impromptu health`` says whether it is fresh."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

EVERY_S = 5.0
STALE_S = 15.0
"""A heartbeat older than this means the process is gone or stuck."""


def write(path: Path, state: dict[str, Any]) -> None:
    """Replace ``path`` atomically with ``state`` and the time."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps({**state, "pid": os.getpid(), "time": time.time()}))
    os.replace(temporary, path)


@contextlib.asynccontextmanager
async def heartbeat(path: Path | None, state: Callable[[], dict[str, Any]]) -> AsyncIterator[None]:
    """Write ``state()`` to ``path`` every ``EVERY_S`` while the block runs (nothing if ``path`` is ``None``); the
    file is removed afterwards."""
    if path is None:
        yield
        return

    async def beat() -> None:
        while True:
            await asyncio.to_thread(write, path, state())
            await asyncio.sleep(EVERY_S)

    task = asyncio.ensure_future(beat())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait({task})
        with contextlib.suppress(OSError):
            os.unlink(path)  # (a local file: no reason to hand it to a thread)


def check(path: Path, now: float | None = None) -> str | None:
    """Why the process writing ``path`` is not healthy, or ``None`` if it is."""
    try:
        state = json.loads(path.read_text())
        written = float(state["time"])
    except FileNotFoundError:
        return f"no heartbeat at {path}: the process is not running (or was started without --health-file)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"the heartbeat at {path} cannot be read: {exc}"
    age = (time.time() if now is None else now) - written
    if age > STALE_S:
        return f"the heartbeat at {path} is {age:.0f} s old: the process is stuck or gone"
    if state.get("ok") is not True:
        return f"unhealthy: {state.get('problem') or 'no reason given'}"
    return None
