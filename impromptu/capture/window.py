"""One X window's own pixels: Composite redirection, MIT-SHM reads of its backing pixmap, DAMAGE for changes.

Sharing one window is about privacy, so two rules hold throughout:

- Pixels come only from the window's own backing pixmap (Composite, ``RedirectAutomatic`` so the screen still
  shows the window as before). Windows stacked above it draw into their own storage, never into that pixmap.
- A freshly allocated backing pixmap is *not* the window's own yet. The X server allocates one when the window
  is redirected, mapped or resized, and unless the window has a background colour it starts out as a copy of
  what the screen showed there — windows above it included (seen on Xvfb 21.1: a covering window's pixels in the
  new pixmap of a window without background). So every pixmap we name is blacked out by us before we read it —
  on our own connection, hence before any read of ours — and the window and its subwindows are sent Expose so
  their owner paints them again. A window whose owner never repaints stays black; it never shows what covered it.

What is drawn over the window: its application's own popups (menus, dropdowns, tooltips), else viewers would click
blind. A popup is a top-level window (a child of the root) stacked above the shared window's top-level window that
``is_app_popup`` accepts — the one rule input follows too: override-redirect, viewable, InputOutput, created by the
*same X client* as the shared window (the client bits of its id: ``client_of``), and not ``WM_TRANSIENT_FOR``
another of the application's ordinary windows (one connection may hold several windows, and another may be
private: its dropdowns are its own). Such a popup is drawn over the frame where it is relative to the window,
clipped to the window's rectangle, the popups in root stacking order, only while it is mapped — and its pixels, too,
come from its own backing pixmap under the same two rules (redirected, blacked out and exposed before our first
read), never from the screen. Windows of other clients, the same client's other (not override-redirect) top-level
windows and their popups are never drawn. The rule costs round trips, so it is applied only when the top-level
windows change (mapped, unmapped, moved, restacked, …) or a ``WM_TRANSIENT_FOR`` of the application's top-level
windows does (``PropertyChangeMask`` on those above the window). A popup is read again only when DAMAGE says it
changed or it moved relative to the window; with no popup up a grab is one read, as before. Popups are taken as
opaque, as automatic redirection shows them.

The window's title (``_NET_WM_NAME``, else ``WM_NAME``) is followed too: ``grab`` raises ``SurfaceRenamed`` once
after it changed.

Pixels are read with MIT-SHM (ShmGetImage into a SysV shared-memory segment, over python-xlib's own connection):
0.4–2 ms for 1280x800 here, where python-xlib's GetImage through the socket takes 6–10 ms. Without MIT-SHM (a
remote display, or no shared memory) GetImage is used, and ``fallbacks`` says why.

Frames are cropped to an even size (an odd last column or row is left out), as the screen source does.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from Xlib import X, Xatom, error
from Xlib.display import Display
from Xlib.ext import composite, damage
from Xlib.protocol import rq

from impromptu.capture.base import Frame, SurfaceGone, SurfacePaused, SurfaceRenamed, SurfaceResized
from impromptu.display.windows import client_of, is_app_popup, window_title
from impromptu.errors import CaptureError

logger = logging.getLogger(__name__)

_ALL_PLANES = 0xFFFFFFFF
_SEGMENT_STEP = 1 << 20
"""Shared-memory segments grow in steps of this many bytes, so a window resized by a few pixels keeps its segment."""
_GONE = (error.BadWindow, error.BadDrawable, error.BadMatch)
"""Replies that mean another client's window went away (or was unmapped) while we looked at it."""
_ROOT_CHILD_EVENTS = frozenset(
    {X.MapNotify, X.UnmapNotify, X.ConfigureNotify, X.DestroyNotify, X.ReparentNotify, X.CirculateNotify}
)
"""Events about a top-level window that can make one of the application's popups appear, move, restack or go."""

# MIT-SHM requests, as in the protocol's shmproto.h. python-xlib has no MIT-SHM module; sending them on its own
# connection keeps errors with python-xlib (no process-wide Xlib error handler) and needs no second connection.


class _ShmAttach(rq.Request):  # type: ignore[misc]  # python-xlib is untyped
    _request = rq.Struct(
        rq.Card8("opcode"),
        rq.Opcode(1),
        rq.RequestLength(),
        rq.Card32("shmseg"),
        rq.Card32("shmid"),
        rq.Bool("read_only"),
        rq.Pad(3),
    )


class _ShmDetach(rq.Request):  # type: ignore[misc]
    _request = rq.Struct(rq.Card8("opcode"), rq.Opcode(2), rq.RequestLength(), rq.Card32("shmseg"))


class _ShmGetImage(rq.ReplyRequest):  # type: ignore[misc]
    _request = rq.Struct(
        rq.Card8("opcode"),
        rq.Opcode(4),
        rq.RequestLength(),
        rq.Drawable("drawable"),
        rq.Int16("x"),
        rq.Int16("y"),
        rq.Card16("width"),
        rq.Card16("height"),
        rq.Card32("plane_mask"),
        rq.Card8("format"),
        rq.Pad(3),
        rq.Card32("shmseg"),
        rq.Card32("offset"),
    )
    _reply = rq.Struct(
        rq.ReplyCode(),
        rq.Card8("depth"),
        rq.Card16("sequence_number"),
        rq.ReplyLength(),
        rq.Card32("visual"),
        rq.Card32("size"),
        rq.Pad(16),
    )


_IPC_PRIVATE = 0
_IPC_CREAT = 0o1000
_IPC_RMID = 0
_SHMAT_FAILED = ctypes.c_void_p(-1).value


def _libc() -> Any:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
    libc.shmget.restype = ctypes.c_int
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmat.restype = ctypes.c_void_p
    libc.shmdt.argtypes = [ctypes.c_void_p]
    libc.shmdt.restype = ctypes.c_int
    libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    libc.shmctl.restype = ctypes.c_int
    return libc


class _SharedImage:
    """A shared-memory segment attached by us and by the X server, which ShmGetImage fills."""

    def __init__(self, x: Display, opcode: int, size: int) -> None:
        self._x = x
        self._opcode = opcode
        self._libc = _libc()
        self.size = size
        # Private to our user (the server checks our credentials against these permissions).
        shmid = self._libc.shmget(_IPC_PRIVATE, size, _IPC_CREAT | 0o600)
        if shmid < 0:
            raise OSError(ctypes.get_errno(), f"shmget of {size} bytes failed")
        self._seg: int | None = None
        try:
            self._addr: int | None = self._libc.shmat(shmid, None, 0)
            if self._addr in (None, _SHMAT_FAILED):
                self._addr = None
                raise OSError(ctypes.get_errno(), "shmat failed")
            self._seg = x.display.allocate_resource_id()
            catcher = error.CatchError()
            _ShmAttach(
                display=x.display, opcode=opcode, shmseg=self._seg, shmid=shmid, read_only=False, onerror=catcher
            )
            x.sync()
            if catcher.get_error() is not None:
                x.display.free_resource_id(self._seg)
                self._seg = None
                raise OSError(f"the X server cannot attach our shared memory: {catcher.get_error()}")
        except BaseException:
            self.close()
            raise
        finally:
            # Both sides are attached (or it failed): the segment goes away with its last user, even if we crash.
            self._libc.shmctl(shmid, _IPC_RMID, None)

    def read(self, drawable: int, x: int, y: int, width: int, height: int) -> bytes:
        self._get(drawable, x, y, width, height)
        assert self._addr is not None
        return ctypes.string_at(self._addr, width * height * 4)

    def read_mutable(self, drawable: int, x: int, y: int, width: int, height: int) -> bytearray:
        """As ``read``, into a buffer of our own that may be drawn on (one copy, as ``read``)."""
        self._get(drawable, x, y, width, height)
        assert self._addr is not None
        size = width * height * 4
        data = bytearray(size)
        ctypes.memmove((ctypes.c_char * size).from_buffer(data), self._addr, size)
        return data

    def _get(self, drawable: int, x: int, y: int, width: int, height: int) -> None:
        assert self._seg is not None and self._addr is not None
        _ShmGetImage(
            display=self._x.display,
            opcode=self._opcode,
            drawable=drawable,
            x=x,
            y=y,
            width=width,
            height=height,
            plane_mask=_ALL_PLANES,
            format=X.ZPixmap,
            shmseg=self._seg,
            offset=0,
        )

    def close(self) -> None:
        if self._seg is not None:
            seg, self._seg = self._seg, None
            try:
                _ShmDetach(display=self._x.display, opcode=self._opcode, shmseg=seg)
                self._x.display.free_resource_id(seg)
            except (error.ConnectionClosedError, OSError):
                pass
        if self._addr is not None:
            self._libc.shmdt(self._addr)
            self._addr = None


@dataclass(eq=False)
class _Popup:
    """One of the shared window's application's popups, as last scanned, and what we hold of it."""

    window: Any
    area: tuple[int, int, int, int]
    """Its outside (border included: its pixmap's extent) on the root window: x, y, width, height."""
    pixmap: Any = None
    pixmap_size: tuple[int, int] = (0, 0)
    damage: int | None = None
    redirected: bool = False
    name_due: bool = True
    failed: bool = False
    """Naming it failed (unmapped or destroyed meanwhile): left alone until the next scan."""
    dirty: bool = True
    read_from: tuple[int, int, int, int] | None = None
    """The part of its pixmap ``pixels`` holds (x, y, width, height), to know when it must be read again."""
    pixels: Any = None


class X11WindowSource:
    """The pixels of one X window — its own and its application's popups over it (module docstring), never those
    of other windows above it — its title, and where it is on the screen.

    ``window_id`` is any window with its own contents, usually an application's top-level window (under a window
    manager: the client window, not the frame around it, whose title bar is left out).
    """

    def __init__(self, display: str, window_id: int) -> None:
        self.display = display
        self.window_id = window_id
        self.fallbacks: list[str] = []
        """Why capture runs in a slower or cruder way than it could (empty when all is well)."""
        self._closed = False
        self._gone = False
        self._viewable = False
        self._dirty = True
        self._name_due = True
        self._check_viewable = True
        self._position_stale = True
        self._ancestors_stale = True
        self._report_resize = False
        self._title_stale = True
        self._title: str | None = None
        self._report_rename = False
        self._popups_stale = True
        self._popups: list[_Popup] = []
        """The application's popups above the window, bottom to top (module docstring)."""
        self._property_watched: set[int] = set()
        """The application's top-level windows whose property changes (``WM_TRANSIENT_FOR``) we are told of."""
        self._top_id = window_id
        """The shared window's top-level window (a child of the root): itself, or a window manager's frame."""
        self._ancestors: dict[int, Any] = {}
        self._pixmap: Any = None
        self._gc: Any = None
        self._shm: _SharedImage | None = None
        self._shm_opcode: int | None = None
        self._damage: int | None = None
        self._redirected = False
        self._border = 0
        self._width = self._height = 0
        self._position = (0, 0)
        try:
            self._x = Display(display)
        except (error.DisplayError, error.ConnectionClosedError, OSError) as exc:
            raise CaptureError(f"cannot open X display {display}: {exc}") from exc
        try:
            self._setup()
            self._refresh()
        except CaptureError:
            self.close()
            raise
        except (error.XError, error.ConnectionClosedError, OSError) as exc:
            self.close()
            raise CaptureError(f"cannot capture window {window_id:#x} of {display}: {exc}") from exc

    def _setup(self) -> None:
        x = self._x
        x.set_error_handler(self._x_error)
        name = f"window {self.window_id:#x} of {self.display}"
        if x.query_extension("Composite") is None:
            # Reading the window's area of the screen instead would show whatever covers it: no such fallback.
            raise CaptureError(
                f"cannot capture {name}: the X server has no Composite extension, which capturing one window "
                "without what covers it needs; share the whole screen instead"
            )
        version = x.composite_query_version()
        if (version.major_version, version.minor_version) < (0, 2):
            raise CaptureError(
                f"cannot capture {name}: the X server's Composite extension is version "
                f"{version.major_version}.{version.minor_version}, and 0.2 or later is needed"
            )
        self._window = x.create_resource_object("window", self.window_id)
        try:
            geometry = self._window.get_geometry()
        except (error.BadWindow, error.BadDrawable) as exc:
            raise CaptureError(f"there is no {name} (closed already?); `impromptu windows` lists them") from exc
        self._root = geometry.root
        if self._root.id == self.window_id:
            raise CaptureError(f"{name} is the root window: share the whole screen instead")
        formats = {f.depth: f.bits_per_pixel for f in x.display.info.pixmap_formats}
        if geometry.depth not in (24, 32) or formats.get(geometry.depth) != 32:
            raise CaptureError(f"cannot capture {name}: its depth ({geometry.depth} bits) is not supported")
        self._configured = (geometry.width, geometry.height, geometry.border_width)
        self._set_size(geometry.width, geometry.height)
        self._client = client_of(self.window_id, x.display.info.resource_id_mask)
        self._net_wm_name = x.get_atom("_NET_WM_NAME")
        # Structure events: resizes and moves (ConfigureNotify), map/unmap, reparenting, destruction; and the title.
        self._window.change_attributes(event_mask=X.StructureNotifyMask | X.PropertyChangeMask)
        # The top-level windows' structure events: the application's popups appearing, moving, going.
        self._root.change_attributes(event_mask=X.SubstructureNotifyMask)
        catcher = error.CatchError()
        self._window.composite_redirect_window(composite.RedirectAutomatic, onerror=catcher)
        x.sync()
        if catcher.get_error() is not None:
            raise CaptureError(f"cannot redirect {name} off-screen: {catcher.get_error()}")
        self._redirected = True
        if x.query_extension("DAMAGE") is not None:
            x.damage_query_version()
            self._damage = self._window.damage_create(damage.DamageReportNonEmpty)
        else:
            self.fallbacks.append("no DAMAGE extension: grabbing every tick")
        shm = x.query_extension("MIT-SHM")
        if shm is None:
            self.fallbacks.append("no MIT-SHM extension: reading pixels through the X connection (slower)")
        else:
            self._shm_opcode = shm.major_opcode

    def _x_error(self, err: Any, request: Any) -> None:
        # Errors of requests nobody waits for: a window destroyed under our feet (its events follow), and cleanup.
        logger.debug("X error ignored while capturing window %#x: %s", self.window_id, err)

    def _set_size(self, width: int, height: int) -> None:
        # Encoders want even sizes: leave out an odd last row or column.
        self._width = width & ~1
        self._height = height & ~1

    @property
    def size(self) -> tuple[int, int]:
        """The size of the pictures: the window's inside (without its border), cropped to even numbers."""
        return self._width, self._height

    @property
    def title(self) -> str:
        """The window's title as last seen (``_NET_WM_NAME``, else ``WM_NAME``; "" when it has neither)."""
        return self._title or ""

    @property
    def position(self) -> tuple[int, int]:
        """Where the window's inside (the pictures' top-left pixel) is on the root window, as last seen by
        ``changed()`` or ``grab()``. Safe to read from another thread."""
        return self._position

    def fileno(self) -> int | None:
        return self._x.fileno() if self._damage is not None else None

    def changed(self) -> bool:
        self._refresh()
        if self._gone:
            return True
        if not self._showing():
            return self._dirty  # true once after it stopped showing, so that the pause is noticed
        return self._dirty or self._damage is None

    def grab(self) -> Frame:
        if self._closed:
            raise CaptureError(f"the capture of window {self.window_id:#x} is closed")
        self._refresh()
        if self._gone:
            raise SurfaceGone(f"window {self.window_id:#x} was closed")
        if self._report_rename:
            self._report_rename = False
            raise SurfaceRenamed(self.title)
        if not self._showing():
            self._dirty = False
            raise SurfacePaused(self._pause_reason())
        if self._report_resize:
            self._report_resize = False
            raise SurfaceResized(f"window {self.window_id:#x} is now {self._width}x{self._height}")
        try:
            if self._damage is not None:
                # Subtract before reading, so drawing that happens during the grab raises a new notification.
                self._x.damage_subtract(self._damage)
            self._dirty = False
            capture_us = time.time_ns() // 1000
            shown = self._shown_popups()
            for popup, source, _ in shown:
                if popup.dirty or popup.damage is None or popup.read_from != source:
                    self._read_popup(popup, source)
            data = self._read(mutable=bool(shown))
            if shown:
                picture = np.frombuffer(data, np.uint8).reshape(self._height, self._width, 4)
                for popup, (_, _, width, height), (left, top) in shown:  # bottom to top
                    picture[top : top + height, left : left + width] = popup.pixels
        except (error.XError, error.ConnectionClosedError, OSError) as exc:
            raise CaptureError(f"grab of window {self.window_id:#x} failed: {exc}") from exc
        return Frame(data, self._width, self._height, capture_us)

    def _read(self, mutable: bool = False) -> bytes | bytearray:
        # Always from the pixmap we named and blacked out ourselves: if the window was resized since, this is the
        # old one (stale, but the window's own); the new one is named once its ConfigureNotify is read.
        return self._read_pixels(self._pixmap, self._border, self._border, self._width, self._height, mutable)

    def _read_pixels(
        self, pixmap: Any, left: int, top: int, width: int, height: int, mutable: bool = False
    ) -> bytes | bytearray:
        if self._shm is not None:
            if mutable:
                return self._shm.read_mutable(pixmap.id, left, top, width, height)
            return self._shm.read(pixmap.id, left, top, width, height)
        image = pixmap.get_image(left, top, width, height, X.ZPixmap, _ALL_PLANES)
        data: bytes = image.data
        return bytearray(data) if mutable else data

    def _shown_popups(
        self,
    ) -> list[tuple[_Popup, tuple[int, int, int, int], tuple[int, int]]]:
        """The popups to draw now, bottom to top: each with the part of its pixmap that falls on the window
        (x, y, width, height) and where in the frame that part goes."""
        shown = []
        wx, wy = self._position
        for popup in self._popups:
            if popup.pixmap is None:
                continue
            px, py, pw, ph = popup.area
            # A pixmap named before the popup was resized is stale: draw no more than both sizes cover.
            pw, ph = min(pw, popup.pixmap_size[0]), min(ph, popup.pixmap_size[1])
            left, top = max(px, wx), max(py, wy)
            right, bottom = min(px + pw, wx + self._width), min(py + ph, wy + self._height)
            if right > left and bottom > top:
                source = (left - px, top - py, right - left, bottom - top)
                shown.append((popup, source, (left - wx, top - wy)))
        return shown

    def _read_popup(self, popup: _Popup, source: tuple[int, int, int, int]) -> None:
        if popup.damage is not None:
            self._x.damage_subtract(popup.damage)
        popup.dirty = False
        left, top, width, height = source
        data = self._read_pixels(popup.pixmap, left, top, width, height)
        popup.pixels = np.frombuffer(data, np.uint8).reshape(height, width, 4)
        popup.read_from = source

    def _showing(self) -> bool:
        return self._viewable and self._pixmap is not None and self._width >= 2 and self._height >= 2

    def _pause_reason(self) -> str:
        if not self._viewable:
            return f"window {self.window_id:#x} is not shown (minimised or hidden)"
        return f"window {self.window_id:#x} is too small to show ({self._width}x{self._height})"

    def _refresh(self) -> None:
        """Read the events that have arrived and bring what we know of the window up to date."""
        try:
            while True:
                while self._x.pending_events():
                    self._handle(self._x.next_event())
                if self._gone:
                    return
                if self._ancestors_stale:
                    self._watch_ancestors()
                elif self._check_viewable:
                    self._check_viewable = False
                    self._viewable = self._window.get_attributes().map_state == X.IsViewable
                    if not self._viewable:
                        self._free_pixmap()
                elif self._position_stale:
                    self._position_stale = False
                    where = self._root.translate_coords(self._window, 0, 0)
                    self._position = (where.x, where.y)
                elif self._name_due and self._viewable:
                    self._name_pixmap()
                elif self._title_stale:
                    self._read_title()
                elif self._popups_stale:
                    self._scan_popups()
                elif (popup := self._popup_to_name()) is not None:
                    self._name_popup(popup)
                else:
                    return
        except (error.BadWindow, error.BadDrawable):
            self._gone = self._dirty = True  # its DestroyNotify is on the way
        except error.XError as exc:
            raise CaptureError(f"watching window {self.window_id:#x} of {self.display} failed: {exc}") from exc
        except (error.ConnectionClosedError, OSError) as exc:
            raise CaptureError(f"lost X display {self.display}: {exc}") from exc

    def _handle(self, event: Any) -> None:
        kind = event.type
        if self._damage is not None and kind == self._x.extension_event.DamageNotify:
            if event.damage != self._damage:
                for popup in self._popups:
                    if popup.damage == event.damage:
                        popup.dirty = True
            self._dirty = True
            return
        window = getattr(event, "window", None)
        if window is None:
            return
        if kind in _ROOT_CHILD_EVENTS and (
            window.id == self._top_id or client_of(window.id, self._x.display.info.resource_id_mask) == self._client
        ):
            # Maybe one of the application's popups appeared, moved, restacked or went (the window's own
            # top-level restacked, say); other clients' windows never matter here.
            self._popups_stale = True
            if kind == X.DestroyNotify:
                self._property_watched.discard(window.id)  # its id may come back as a new window: select again
        elif kind == X.PropertyNotify and event.atom == Xatom.WM_TRANSIENT_FOR and window.id in self._property_watched:
            self._popups_stale = True  # whose popup it is may have changed
        if window.id == self.window_id:
            if kind == X.PropertyNotify:
                if event.atom in (self._net_wm_name, Xatom.WM_NAME):
                    self._title_stale = True
            elif kind == X.ConfigureNotify:
                self._position_stale = True
                # A window manager's synthetic ConfigureNotify only reports a move of the frame.
                shape = (event.width, event.height, event.border_width)
                if not event.send_event and shape != self._configured:
                    self._configured = shape
                    self._name_due = True  # the server gave the window a new pixmap
            elif kind == X.MapNotify:
                self._check_viewable = self._name_due = self._position_stale = True
            elif kind == X.UnmapNotify:
                self._check_viewable = self._dirty = True
            elif kind == X.ReparentNotify:
                self._ancestors_stale = self._check_viewable = self._position_stale = True
            elif kind == X.DestroyNotify:
                self._gone = self._dirty = True
        elif window.id in self._ancestors:
            # The window shows only while all its ancestors are mapped (a frame unmapped by a window manager).
            if kind == X.ConfigureNotify:
                self._position_stale = True
            elif kind == X.MapNotify:
                self._check_viewable = self._name_due = self._position_stale = True
            elif kind == X.UnmapNotify:
                self._check_viewable = self._dirty = True

    def _watch_ancestors(self) -> None:
        self._ancestors_stale = False
        ancestors: dict[int, Any] = {}
        tree = self._window.query_tree()
        parent = tree.parent
        try:
            while parent.id != self._root.id:
                ancestors[parent.id] = parent
                parent = parent.query_tree().parent
        except error.BadWindow:
            pass  # reparented or destroyed meanwhile: the events that say so follow
        for wid, old in self._ancestors.items():
            if wid not in ancestors:
                old.change_attributes(event_mask=X.NoEventMask)
                self._property_watched.discard(wid)
        for ancestor in ancestors.values():
            ancestor.change_attributes(event_mask=X.StructureNotifyMask)
            self._property_watched.discard(ancestor.id)  # that replaced any PropertyChangeMask of ours
        self._ancestors = ancestors
        self._top_id = list(ancestors)[-1] if ancestors else self.window_id
        self._check_viewable = self._position_stale = self._name_due = self._popups_stale = True

    def _name_pixmap(self) -> None:
        self._name_due = False
        self._free_pixmap()
        catcher = error.CatchError()
        pixmap = self._window.composite_name_window_pixmap(onerror=catcher)
        geometry = self._window.get_geometry()  # a round trip: the naming has been answered by now
        if catcher.get_error() is not None:
            # Not viewable any more: the events that say so follow.
            self._x.display.free_resource_id(pixmap.id)
            self._check_viewable = True
            return
        self._pixmap = pixmap
        area = pixmap.get_geometry()
        if self._gc is None:
            self._gc = pixmap.create_gc(foreground=0, graphics_exposures=False)
        # Before anything of ours reads it: black out what the server copied in, then have the owner repaint.
        pixmap.fill_rectangle(self._gc, 0, 0, area.width, area.height)
        self._expose_all(self._window)
        self._border = border = min(geometry.border_width, area.width // 2, area.height // 2)
        before = self.size
        self._set_size(area.width - 2 * border, area.height - 2 * border)
        if self.size != before:
            logger.info("window %#x of %s is now %dx%d", self.window_id, self.display, *self.size)
            self._report_resize = True
        self._dirty = True
        self._fit_shared_memory()

    def _expose_all(self, top: Any) -> None:
        """Ask the owner of ``top`` to repaint all of it: the window and each of its subwindows."""
        pending = [top]
        while pending:
            window = pending.pop()
            window.clear_area(exposures=True)  # the whole window; its background, if it has one, is painted
            try:
                pending.extend(window.query_tree().children)
            except error.BadWindow:
                if window is top:
                    raise

    def _read_title(self) -> None:
        self._title_stale = False
        title = window_title(self._window, self._net_wm_name)
        if self._title is not None and title != self._title:
            logger.info("window %#x of %s is now titled %r", self.window_id, self.display, title[:80])
            self._report_rename = self._dirty = True
        self._title = title

    def _scan_popups(self) -> None:
        """Find the application's popups above the window (module docstring), bottom to top, keeping what we
        hold of those still there and letting go of the others."""
        self._popups_stale = False
        held = {popup.window.id: popup for popup in self._popups}
        popups: list[_Popup] = []
        above = False
        mask = self._x.display.info.resource_id_mask
        formats = {f.depth: f.bits_per_pixel for f in self._x.display.info.pixmap_formats}
        for child in self._root.query_tree().children:  # bottom to top
            if child.id == self._top_id:
                above = True
                continue
            if not above or client_of(child.id, mask) != self._client:
                continue
            if child.id == self.window_id or child.id in self._ancestors:
                continue  # reparented meanwhile: the events that say so follow (their event masks are kept)
            if child.id not in self._property_watched:
                # Before reading WM_TRANSIENT_FOR, so that a change after the read is reported. Our connection
                # selects nothing else on the application's other top-level windows.
                self._property_watched.add(child.id)
                child.change_attributes(event_mask=X.PropertyChangeMask)
            if not is_app_popup(child, self.window_id, mask):
                continue
            try:
                geometry = child.get_geometry()
            except _GONE:
                continue  # destroyed or unmapped meanwhile: the events that say so follow
            if formats.get(geometry.depth) != 32:
                continue  # not 32 bits a pixel, as our frames are: cannot be drawn over them
            border = geometry.border_width
            area = (geometry.x, geometry.y, geometry.width + 2 * border, geometry.height + 2 * border)
            popup = held.pop(child.id, None) or _Popup(child, area)
            if popup.area[2:] != area[2:]:
                popup.name_due = True  # resized: the server gave it a new pixmap
            popup.area = area
            popup.failed = False
            popups.append(popup)
        for gone in held.values():
            self._release_popup(gone)
        if popups or held:
            self._dirty = True
        self._popups = popups

    def _popup_to_name(self) -> _Popup | None:
        """A popup on the window whose pixmap is not named yet (or is stale), if any."""
        if not self._viewable or self._pixmap is None:
            return None
        wx, wy = self._position
        for popup in self._popups:
            px, py, pw, ph = popup.area
            on_window = px < wx + self._width and wx < px + pw and py < wy + self._height and wy < py + ph
            if popup.name_due and not popup.failed and on_window:
                return popup
        return None

    def _name_popup(self, popup: _Popup) -> None:
        """As ``_name_pixmap`` for a popup: its own pixmap, blacked out and exposed before we read it."""
        popup.name_due = False
        self._free_popup_pixmap(popup)
        window = popup.window
        redirecting = error.CatchError()
        if not popup.redirected:
            window.composite_redirect_window(composite.RedirectAutomatic, onerror=redirecting)
        catcher = error.CatchError()
        pixmap = window.composite_name_window_pixmap(onerror=catcher)
        try:
            area = pixmap.get_geometry()  # a round trip: redirecting and naming have been answered by now
        except _GONE:
            area = None
        popup.redirected = popup.redirected or redirecting.get_error() is None
        if redirecting.get_error() is not None or catcher.get_error() is not None or area is None:
            self._x.display.free_resource_id(pixmap.id)
            popup.failed = True  # unmapped or destroyed meanwhile: the events that say so follow
            return
        popup.pixmap = pixmap
        popup.pixmap_size = (area.width, area.height)
        if self._damage is not None and popup.damage is None:
            # Before the expose: the repaint it asks for must be reported.
            popup.damage = window.damage_create(damage.DamageReportNonEmpty)
        if self._gc is None:
            self._gc = pixmap.create_gc(foreground=0, graphics_exposures=False)
        pixmap.fill_rectangle(self._gc, 0, 0, area.width, area.height)
        with contextlib.suppress(*_GONE):  # destroyed meanwhile: black it stays until its events are read
            self._expose_all(window)
        popup.dirty = self._dirty = True

    def _free_popup_pixmap(self, popup: _Popup) -> None:
        if popup.pixmap is not None:
            popup.pixmap.free()
            popup.pixmap = None
        popup.pixels = popup.read_from = None

    def _release_popup(self, popup: _Popup) -> None:
        """Let go of a popup that went (errors about a destroyed one go to ``_x_error``)."""
        self._free_popup_pixmap(popup)
        if popup.damage is not None:
            self._x.damage_destroy(popup.damage)
            popup.damage = None
        if popup.redirected:
            popup.window.composite_unredirect_window(composite.RedirectAutomatic)
            popup.redirected = False

    def _fit_shared_memory(self) -> None:
        if self._shm_opcode is None:
            return
        needed = self._width * self._height * 4
        if self._shm is not None and self._shm.size >= needed:
            return
        if self._shm is not None:
            self._shm.close()
            self._shm = None
        size = max(_SEGMENT_STEP, -(-needed // _SEGMENT_STEP) * _SEGMENT_STEP)
        try:
            self._shm = _SharedImage(self._x, self._shm_opcode, size)
        except OSError as exc:
            self._shm_opcode = None
            self.fallbacks.append(f"no shared memory with the X server ({exc}): reading pixels through the socket")
            logger.info("capturing window %#x without MIT-SHM: %s", self.window_id, exc)

    def _free_pixmap(self) -> None:
        if self._pixmap is not None:
            self._pixmap.free()
            self._pixmap = None

    def close(self) -> None:
        """Stop redirecting the window and free what was made for it (idempotent)."""
        if self._closed:
            return
        self._closed = True
        x = getattr(self, "_x", None)
        if x is None:
            return
        try:
            if self._shm is not None:
                self._shm.close()
                self._shm = None
            self._free_pixmap()
            for popup in self._popups:
                self._release_popup(popup)
            self._popups = []
            if self._gc is not None:
                self._gc.free()
            if self._damage is not None:
                x.damage_destroy(self._damage)
            if self._redirected:
                self._window.composite_unredirect_window(composite.RedirectAutomatic)
        except (error.ConnectionClosedError, OSError):
            pass
        finally:
            with contextlib.suppress(error.ConnectionClosedError, OSError):
                x.close()
