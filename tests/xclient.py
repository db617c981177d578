"""An X client of the tests' own: a window that paints itself and records the events it gets."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from Xlib import X, Xatom
from Xlib.display import Display

TIMEOUT_S = 10.0
_INPUT_EVENTS = frozenset({X.KeyPress, X.KeyRelease, X.ButtonPress, X.ButtonRelease, X.MotionNotify})


class XWindow:
    """A top-level, override-redirect X window of a test's own, which can paint itself and records events."""

    def __init__(self, display: str, x: int, y: int, w: int, h: int, event_mask: int = 0) -> None:
        self.d = Display(display)
        screen = self.d.screen()
        self.window: Any = screen.root.create_window(
            x, y, w, h, 0, screen.root_depth, override_redirect=True, event_mask=event_mask
        )
        self.size = (w, h)
        self.events: list[Any] = []
        """Every event received so far (a test may clear it)."""
        self.gc = self.window.create_gc()
        self.window.map()
        self.d.sync()

    def fill(self, rgb: int) -> None:
        self.gc.change(foreground=rgb)
        self.window.fill_rectangle(self.gc, 0, 0, *self.size)
        self.d.sync()

    def focus(self) -> None:
        self.window.set_input_focus(X.RevertToParent, X.CurrentTime)
        self.d.sync()

    def wait_events(self, kinds: set[int]) -> list[Any]:
        """The first event of each kind in ``kinds`` among ``events``, reading more for up to 15 s in total."""
        for _ in range(150):
            while self.d.pending_events():
                self.events.append(self.d.next_event())
            seen: dict[int, Any] = {}
            for event in self.events:
                if event.type in kinds:
                    seen.setdefault(event.type, event)
            if set(seen) == kinds:
                return [seen[kind] for kind in sorted(kinds)]
            select.select([self.d.fileno()], [], [], 0.1)
        raise AssertionError(f"saw only {sorted(seen)} of {sorted(kinds)}")

    def close(self) -> None:
        self.window.destroy()
        self.d.close()


class Painter:
    """A window whose client, in a thread of its own, paints it when exposed or asked to — as applications do.

    Its background is None, so only its client ever paints it: the case where a window's new backing pixmap
    starts out as a copy of the screen, covering windows included.

    With ``input_mask`` it also records the input events it gets (``events``, ``wait_event``, ``sync``). With
    ``title`` it is a normal window (not override-redirect) with that ``WM_NAME``, which ``impromptu windows``
    lists."""

    def __init__(
        self,
        display: str,
        x: int,
        y: int,
        w: int,
        h: int,
        colours: tuple[int, ...],
        border: int = 0,
        border_pixel: int = 0,
        input_mask: int = 0,
        title: str | None = None,
    ) -> None:
        self.d = Display(display)
        self.d.set_error_handler(lambda err, request: None)  # painting a window the test destroyed
        screen = self.d.screen()
        self.window: Any = screen.root.create_window(
            x,
            y,
            w,
            h,
            border,
            screen.root_depth,
            override_redirect=title is None,
            border_pixel=border_pixel,
            event_mask=X.ExposureMask | X.StructureNotifyMask | input_mask,
        )
        if title is not None:
            self.window.set_wm_name(title)
        self.events: list[Any] = []
        """Input events received (KeyPress, ButtonPress, …), in order; guarded by the painter's condition."""
        self._sync_wanted = False
        self.syncs = 0
        self.id: int = self.window.id
        self.gc = self.window.create_gc()
        self._size = (w, h)
        self._colours = colours
        self._cond = threading.Condition()
        self._repaint = False
        self._stop = False
        self._held = self._holding = False
        self.paints = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._run, name=f"painter-{self.id:#x}", daemon=True)
        self.window.map()
        self.d.flush()
        self._thread.start()  # from here on only the thread uses self.d

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._held and not self._stop:
                    self._holding = True
                    self._cond.notify_all()
                    self._cond.wait()
                self._holding = False
            exposed = False
            while self.d.pending_events():
                event = self.d.next_event()
                if event.type == X.Expose:
                    exposed = True
                elif event.type == X.ConfigureNotify:
                    self._size = (event.width, event.height)
                elif event.type == X.DestroyNotify:
                    return
                elif event.type in _INPUT_EVENTS:
                    with self._cond:
                        self.events.append(event)
                        self._cond.notify_all()
            with self._cond:
                if self._stop:
                    return
                repaint, self._repaint = self._repaint, False
                sync, self._sync_wanted = self._sync_wanted, False
            if sync:
                # A round trip: every event the server sent us before its reply is in our queue after it.
                self.d.sync()
                with self._cond:
                    while self.d.pending_events():
                        event = self.d.next_event()
                        if event.type in _INPUT_EVENTS:
                            self.events.append(event)
                    self.syncs += 1
                    self._cond.notify_all()
            if exposed or repaint:
                self._paint()
            select.select([self.d.fileno(), self._wake_r], [], [])
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 64)

    def _paint(self) -> None:
        w, h = self._size
        first, *rest = self._colours
        self.gc.change(foreground=first)
        self.window.fill_rectangle(self.gc, 0, 0, w, h)
        if rest:
            self.gc.change(foreground=rest[0])
            cells = [(x, y, 8, 8) for y in range(0, h, 8) for x in range(0, w, 8) if (x // 8 + y // 8) % 2]
            self.window.poly_fill_rectangle(self.gc, cells)
        self.d.sync()
        with self._cond:
            self.paints += 1
            self._cond.notify_all()

    def wait_painted(self, after: int) -> int:
        """Wait until the window has been painted more than ``after`` times in all (bounded); the new count."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.paints > after, TIMEOUT_S), f"window {self.id:#x} not painted"
            return self.paints

    def paint(self, colours: tuple[int, ...]) -> None:
        with self._cond:
            self._colours = colours
            self._repaint = True
        os.write(self._wake_w, b"\0")

    def wait_event(self, predicate: Callable[[Any], bool]) -> Any:
        """The first recorded input event that satisfies ``predicate``, waiting for it (bounded)."""
        with self._cond:
            found: list[Any] = []

            def seen() -> bool:
                found[:] = [e for e in self.events if predicate(e)][:1]
                return bool(found)

            assert self._cond.wait_for(seen, TIMEOUT_S), f"window {self.id:#x} got no such event: {self.events}"
            return found[0]

    def sync(self) -> list[Any]:
        """Every input event the X server sent this window before now (a round trip on its own connection)."""
        with self._cond:
            self._sync_wanted = True
            before = self.syncs
        os.write(self._wake_w, b"\0")
        with self._cond:
            assert self._cond.wait_for(lambda: self.syncs > before, TIMEOUT_S), "the painter did not sync"
            return list(self.events)

    def hold(self) -> None:
        """Stop painting — a busy or hung application — until ``release``: what the window shows meanwhile is
        whatever its new pixmap started with."""
        with self._cond:
            self._held = True
            os.write(self._wake_w, b"\0")
            assert self._cond.wait_for(lambda: self._holding, TIMEOUT_S)

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        os.write(self._wake_w, b"\0")
        self._thread.join(TIMEOUT_S)
        assert not self._thread.is_alive()
        self.window.destroy()  # already gone in some tests: the error handler ignores that
        self.d.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


def set_mode(display: str, width: int, height: int) -> None:
    """Switch the Xvfb screen to a smaller mode, as a user's `xrandr` would."""
    name = f"{width}x{height}_test"
    modeline = ["63.50", str(width), str(width + 48), str(width + 152), str(width + 304)]
    modeline += [str(height), str(height + 3), str(height + 7), str(height + 30), "-hsync", "+vsync"]
    for args in (["--newmode", name, *modeline], ["--addmode", "screen", name], ["--output", "screen", "--mode", name]):
        subprocess.run(["xrandr", "-display", display, *args], check=True, capture_output=True)


class Client:
    """One X client — one connection — with several windows of its own, as an application has: its main window,
    its popups (override-redirect), its other top-level windows. Its thread paints each window its colour whenever
    it is exposed or asked to; everything else the test asks for (``call``) also runs on that thread, on that
    connection, so every window here has the same client bits in its id."""

    def __init__(self, display: str) -> None:
        self.d = Display(display)
        self.d.set_error_handler(lambda err, request: None)  # painting a window the test destroyed
        self._colours: dict[int, int] = {}
        self._windows: dict[int, Any] = {}
        self._sizes: dict[int, tuple[int, int]] = {}
        self._cond = threading.Condition()
        self._calls: list[tuple[Callable[[Display], Any], list[Any]]] = []
        self._repaint: set[int] = set()
        self._stop = False
        self._held = self._holding = False
        self.paints: dict[int, int] = {}
        """How many times each window has been painted."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._run, name="client", daemon=True)
        self._thread.start()  # from here on only the thread uses self.d

    def call(self, fn: Callable[[Display], Any]) -> Any:
        """``fn(display)`` on the client's thread and connection (then a round trip); its result."""
        box: list[Any] = []
        with self._cond:
            self._calls.append((fn, box))
        os.write(self._wake_w, b"\0")
        with self._cond:
            assert self._cond.wait_for(lambda: bool(box), TIMEOUT_S), "the client did not answer"
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def window(
        self,
        x: int,
        y: int,
        w: int,
        h: int,
        colour: int,
        override_redirect: bool = True,
        title: str | None = None,
        mapped: bool = True,
    ) -> int:
        """A new top-level window of this client (override-redirect unless told: a popup), painted ``colour``;
        its id."""

        def make(d: Display) -> int:
            screen = d.screen()
            window = screen.root.create_window(
                x,
                y,
                w,
                h,
                0,
                screen.root_depth,
                override_redirect=override_redirect,
                event_mask=X.ExposureMask | X.StructureNotifyMask,
            )
            if title is not None:
                window.set_wm_name(title)
            self._windows[window.id] = window
            self._colours[window.id] = colour
            self._sizes[window.id] = (w, h)
            if mapped:
                window.map()
            return int(window.id)

        wid: int = self.call(make)
        return wid

    def map(self, wid: int) -> None:
        self.call(lambda d: self._windows[wid].map())

    def unmap(self, wid: int) -> None:
        self.call(lambda d: self._windows[wid].unmap())

    def configure(self, wid: int, **changes: Any) -> None:
        self.call(lambda d: self._windows[wid].configure(**changes))

    def set_transient_for(self, wid: int, owner: int | None) -> None:
        """Set window ``wid``'s ``WM_TRANSIENT_FOR`` to ``owner`` (whose popup or dialog it is), or delete it."""

        def change(d: Display) -> None:
            window = self._windows[wid]
            if owner is None:
                window.delete_property(Xatom.WM_TRANSIENT_FOR)
            else:
                window.change_property(Xatom.WM_TRANSIENT_FOR, Xatom.WINDOW, 32, [owner])

        self.call(change)

    def paint(self, wid: int, colour: int) -> None:
        with self._cond:
            self._colours[wid] = colour
            self._repaint.add(wid)
        os.write(self._wake_w, b"\0")

    def wait_painted(self, wid: int, after: int = 0) -> int:
        """Wait until window ``wid`` has been painted more than ``after`` times (bounded); the new count."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.paints.get(wid, 0) > after, TIMEOUT_S), f"{wid:#x} not painted"
            return self.paints[wid]

    def hold(self) -> None:
        """Stop painting (and answering ``call``) — a busy application — until ``release``."""
        with self._cond:
            self._held = True
            os.write(self._wake_w, b"\0")
            assert self._cond.wait_for(lambda: self._holding, TIMEOUT_S)

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._held and not self._stop:
                    self._holding = True
                    self._cond.notify_all()
                    self._cond.wait()
                self._holding = False
                if self._stop:
                    return
                calls, self._calls = self._calls, []
                repaint, self._repaint = self._repaint, set()
            while self.d.pending_events():
                event = self.d.next_event()
                if event.type == X.Expose:
                    repaint.add(event.window.id)
                elif event.type == X.ConfigureNotify:
                    self._sizes[event.window.id] = (event.width, event.height)
                elif event.type == X.DestroyNotify:
                    self._windows.pop(event.window.id, None)
            results = []
            for fn, box in calls:
                try:
                    results.append((box, (True, fn(self.d))))
                except Exception as exc:  # handed to the caller
                    results.append((box, (False, exc)))
            painted = []
            for wid in repaint:
                window = self._windows.get(wid)
                if window is not None:
                    gc = window.create_gc(foreground=self._colours[wid])
                    window.fill_rectangle(gc, 0, 0, *self._sizes[wid])
                    gc.free()
                    painted.append(wid)
            self.d.sync()
            with self._cond:
                for box, result in results:
                    box.append(result)
                for wid in painted:
                    self.paints[wid] = self.paints.get(wid, 0) + 1
                self._cond.notify_all()
            if not self.d.pending_events():  # the round trip may have queued events already
                select.select([self.d.fileno(), self._wake_r], [], [])
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 64)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        os.write(self._wake_w, b"\0")
        self._thread.join(TIMEOUT_S)
        assert not self._thread.is_alive()
        self.d.close()  # its windows go with its connection
        os.close(self._wake_r)
        os.close(self._wake_w)
