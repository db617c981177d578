"""How often the app draws: an X client counting DAMAGE bursts on the shared display, in a thread.

The desktop encodes only when the screen changed, so the frames a viewer gets can be no more than the frames the
app drew; on a saturated machine ffplay itself draws fewer than 30 per second. Each app frame arrives as one burst
of damage rectangles; bursts are told apart by a quiet gap of ``GAP_S``.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from typing import Any

from Xlib.display import Display
from Xlib.ext import damage

GAP_S = 0.008


class DrawCounter:
    def __init__(self, display: str) -> None:
        self._d = Display(display)
        self._d.damage_query_version()
        self._damage = self._d.screen().root.damage_create(damage.DamageReportRawRectangles)
        self._d.sync()
        self._lock = threading.Lock()
        self._bursts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="draw-counter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = 0.0
        with contextlib.suppress(Exception):  # the display went away: stop counting
            while not self._stop.is_set():
                select.select([self._d.fileno()], [], [], 0.1)
                while self._d.pending_events():
                    event: Any = self._d.next_event()
                    now = time.monotonic()
                    if event.type == self._d.extension_event.DamageNotify and now - last > GAP_S:
                        with self._lock:
                            self._bursts += 1
                    last = now

    @property
    def draws(self) -> int:
        with self._lock:
            return self._bursts

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self._d.close()
