"""Finding X windows: list a display's top-level client windows, pick some by id, title or class, and wait for one
to appear.

What counts as a window a person would share:

- With a window manager (someone has selected SubstructureRedirect on the root window), the top-level windows
  are the WM's frames; the *client* window is the frame itself or the first of its descendants carrying
  ``WM_STATE`` (the ICCCM rule ``xprop`` and ``xdotool`` follow). Frames with no client (panels drawn by the WM,
  say) are left out; minimised (iconic) clients are listed with ``mapped=False``.
- Without one (a plain Xvfb), nobody sets ``WM_STATE``: the top-level windows are the mapped children of the root
  that are not override-redirect (menus, tooltips, our tests' probes) and have a size.

Either way input-only windows and impromptu's own (``WM_CLASS`` class :data:`OWN_WM_CLASS`) are skipped, and the
list is in stacking order, bottom to top. Coordinates are those of the window's content (inside its border) on the
root window, so a capture of that rectangle shows the window and not its frame.

Reading another client's windows races with that client: a window destroyed between two requests makes X answer
``BadWindow``, and that window is simply left out.
"""

from __future__ import annotations

import contextlib
import gc
import re
import select
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from Xlib import X, Xatom
from Xlib import error as xerror
from Xlib.display import Display

from impromptu.errors import DisplayError, UsageError, WindowNotFound

__all__ = [
    "OWN_WM_CLASS",
    "WindowInfo",
    "WindowSelector",
    "WindowWatch",
    "client_of",
    "find_windows",
    "is_app_popup",
    "list_windows",
    "wait_for_window",
    "window_title",
]

OWN_WM_CLASS = "Impromptu"
"""The ``WM_CLASS`` class of any window impromptu itself creates; such windows are never listed or shared."""

# ICCCM WM_STATE values; a withdrawn client is one its app has unmapped for good.
_WITHDRAWN_STATE = 0

# Replies to these mean the window went away while we looked at it.
_MAX_TRANSIENT_CHAIN = 8
"""Popups nested deeper than this (menu in menu in …) are not taken for the shared window's."""

_GONE = (xerror.BadWindow, xerror.BadDrawable, xerror.BadMatch)


@dataclass(frozen=True)
class WindowInfo:
    """One top-level client window, as it was when listed."""

    id: int
    #: ``_NET_WM_NAME`` (UTF-8) if set, else ``WM_NAME``; "" when it has neither.
    title: str
    #: The class part of ``WM_CLASS`` (``xterm -class Foo`` → ``Foo``); "" when unset.
    wm_class: str
    #: The instance part of ``WM_CLASS`` (usually the program's name, ``xterm``); "" when unset.
    wm_instance: str
    #: ``_NET_WM_PID``, which the app sets itself (many do, some never); ``None`` when unset.
    pid: int | None
    #: The top-left corner of the window's content, in root-window coordinates.
    x: int
    y: int
    width: int
    height: int
    #: Whether it is viewable; only a window manager's iconic (minimised) clients are listed unmapped.
    mapped: bool

    @property
    def id_hex(self) -> str:
        """The id as ``xwininfo`` and ``xdotool`` print it, e.g. ``0x1a00004``."""
        return f"{self.id:#x}"

    @property
    def geometry(self) -> str:
        """``WxH+X+Y``; a negative offset shows as ``+-X`` (still from the left edge, as ``xwininfo`` prints it)."""
        return f"{self.width}x{self.height}+{self.x}+{self.y}"

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "id_hex": self.id_hex,
            "title": self.title,
            "class": self.wm_class,
            "instance": self.wm_instance,
            "pid": self.pid,
            "x": self.x,
            "y": self.y,
            "width": self.width,
            "height": self.height,
            "mapped": self.mapped,
        }


@dataclass(frozen=True)
class WindowSelector:
    """Which windows to pick. Every criterion given must hold; a selector with none picks every window.

    ``ids``: the window is one of these. ``title_regex``: it matches the title anywhere (``re.search``, so
    anchor it with ``^…$`` for a whole title, add ``(?i)`` to ignore case). ``wm_class``: it equals the class or
    the instance of ``WM_CLASS``, ignoring case (``firefox`` finds class ``Firefox``).
    A bad regular expression raises ``UsageError`` here, before anything is looked at.
    """

    ids: tuple[int, ...] = ()
    title_regex: str | None = None
    wm_class: str | None = None

    def __post_init__(self) -> None:
        if self.title_regex is not None:
            try:
                re.compile(self.title_regex)
            except re.error as exc:
                raise UsageError(f"window title {self.title_regex!r} is not a regular expression: {exc}") from None

    def matches(self, window: WindowInfo) -> bool:
        if self.ids and window.id not in self.ids:
            return False
        if self.title_regex is not None and re.search(self.title_regex, window.title) is None:
            return False
        wanted = self.wm_class.casefold() if self.wm_class is not None else None
        return wanted is None or wanted in (window.wm_class.casefold(), window.wm_instance.casefold())

    def describe(self) -> str:
        """What is looked for, for error messages: ``id 0x1a00004, title matching 'bar', class 'Foo'``."""
        parts = []
        if self.ids:
            parts.append("id " + " or ".join(f"{i:#x}" for i in self.ids))
        if self.title_regex is not None:
            parts.append(f"title matching {self.title_regex!r}")
        if self.wm_class is not None:
            parts.append(f"class {self.wm_class!r}")
        return ", ".join(parts) or "any window"


def client_of(window_id: int, resource_id_mask: int) -> int:
    """The X client that created ``window_id``: the id with its resource bits cleared. Every resource a connection
    creates shares these high bits, so two windows with the same value belong to one client (one application
    connection). ``resource_id_mask`` is the server's (python-xlib: ``display.display.info.resource_id_mask``)."""
    return window_id & ~resource_id_mask


def is_app_popup(window: Any, shared_id: int, resource_id_mask: int) -> bool:
    """Whether top-level ``window`` (a python-xlib window, a child of the root) is one of the shared window's
    application's popups — its menus, dropdowns, tooltips — which capture draws over the shared window and input
    may reach (protocol.md §8): made by the same X client, override-redirect, mapped, able to show something
    (InputOutput), and not ``WM_TRANSIENT_FOR`` another of the application's ordinary windows (one application
    connection may hold several windows, and another may be private: its menus are its own). A popup transient
    for the shared window or for nothing, or for a popup that is (a submenu), is the shared window's. Asked of the
    X server (a few round trips); a window gone meanwhile is not a popup."""
    if window.id == shared_id or client_of(window.id, resource_id_mask) != client_of(shared_id, resource_id_mask):
        return False
    try:
        attributes = window.get_attributes()
        if not (
            attributes.override_redirect
            and attributes.map_state == X.IsViewable
            and attributes.win_class == X.InputOutput
        ):
            return False
        # Up the WM_TRANSIENT_FOR chain: a submenu is transient for its menu, which is transient for its window.
        for _ in range(_MAX_TRANSIENT_CHAIN):
            owner = window.get_full_property(Xatom.WM_TRANSIENT_FOR, Xatom.WINDOW)
            if owner is None or owner.format != 32 or len(owner.value) != 1:
                return True  # transient for nothing
            owner_id = int(owner.value[0])
            if owner_id in (0, shared_id):
                return True
            window = type(window)(window.display, owner_id)
            if not window.get_attributes().override_redirect:
                return False  # another of the application's ordinary windows: its menus are its own
        return False
    except _GONE:
        return False


def list_windows(display: str) -> list[WindowInfo]:
    """The top-level client windows of X display ``display``, bottom to top (see the module's docstring).

    Raises ``DisplayError`` when the display cannot be reached.
    """
    conn = _connect(display)
    try:
        return _Scanner(conn).scan()
    except (xerror.ConnectionClosedError, OSError) as exc:
        raise DisplayError(f"lost X display {display} while listing its windows: {exc}") from exc
    finally:
        conn.close()


def find_windows(
    display: str, *, ids: Sequence[int] = (), title_regex: str | None = None, wm_class: str | None = None
) -> list[WindowInfo]:
    """The windows of ``display`` that match every criterion given (see ``WindowSelector``), bottom to top.

    Raises ``UsageError`` for a bad regular expression, ``WindowNotFound`` when no window matches, and
    ``DisplayError`` when the display cannot be reached.
    """
    selector = WindowSelector(ids=tuple(ids), title_regex=title_regex, wm_class=wm_class)
    found = [w for w in list_windows(display) if selector.matches(w)]
    if not found:
        raise WindowNotFound(
            f"no window with {selector.describe()} on display {display}; `impromptu windows` lists them"
        )
    return found


def wait_for_window(display: str, selector: WindowSelector, timeout_s: float, pid: int | None = None) -> WindowInfo:
    """Block until a window matching ``selector`` is mapped on ``display``, and return it (the topmost, if several).

    With ``pid``, only windows whose ``_NET_WM_PID`` is ``pid`` or a descendant of it count: the windows of an app
    we started, not those of apps already there. An app that does not set ``_NET_WM_PID``, or whose windows belong
    to a process that left its tree (a daemonising double fork, a terminal server), is then never found.

    Event-driven: it wakes on X events only (a window created, mapped, reparented, or a property changed), never on
    a timer. From asyncio, run it with ``asyncio.to_thread``; stopping the display ends it at once with
    ``DisplayError``. Raises ``WindowNotFound`` after ``timeout_s``.
    """
    with WindowWatch(display, selector, pid) as watch:
        return watch.wait(timeout_s)


class WindowWatch:
    """A connection that watches ``display`` for a mapped window matching ``selector`` (and ``pid``, as in
    ``wait_for_window``). ``poll()`` looks without blocking; ``wait()`` blocks; ``fileno()`` is the X socket, for
    callers that want to wait on it themselves. ``close()`` is idempotent; also a context manager.
    """

    def __init__(self, display: str, selector: WindowSelector, pid: int | None = None) -> None:
        self.display = display
        self.selector = selector
        self.pid = pid
        self._conn = _connect(display)
        self._closed = False
        # Windows we already asked X to tell us about (property changes, children mapped or reparented).
        self._watched: set[int] = set()
        self._stale = True  # nothing scanned yet
        try:
            # CreateNotify, MapNotify, ReparentNotify, … for every child of the root, from now on: selected before
            # the first scan, so a window that appears during or after it wakes us.
            self._conn.screen().root.change_attributes(event_mask=X.SubstructureNotifyMask)
            self._conn.sync()
        except (xerror.ConnectionClosedError, OSError) as exc:
            self._conn.close()
            raise DisplayError(f"lost X display {display} while watching for windows: {exc}") from exc

    def fileno(self) -> int:
        return int(self._conn.fileno())

    def poll(self) -> WindowInfo | None:
        """The topmost matching window if there is one now, else ``None``; never blocks on the display for long
        (one scan's round trips when X reported a change since the last look)."""
        if self._closed:
            raise DisplayError("this window watch is closed")
        try:
            while True:
                # Events that arrived since the last scan (or during it) mean something may have changed.
                while self._conn.pending_events():
                    event = self._conn.next_event()
                    if event.type == X.DestroyNotify:
                        # X may hand its id to a new window, which we will have to ask about again.
                        self._watched.discard(event.window.id)
                    self._stale = True
                if not self._stale:
                    return None
                self._stale = False
                found = self._match(_Scanner(self._conn, watch=self._watch).scan())
                if found is not None:
                    return found
        except (xerror.ConnectionClosedError, OSError) as exc:
            raise DisplayError(f"lost X display {self.display} while waiting for a window: {exc}") from exc

    def wait(self, timeout_s: float) -> WindowInfo:
        """Block until ``poll()`` finds a window; raises ``WindowNotFound`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (found := self.poll()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                whose = f" of process {self.pid}" if self.pid is not None else ""
                raise WindowNotFound(
                    f"no window{whose} with {self.selector.describe()} was mapped on display {self.display} "
                    f"within {timeout_s:g} s"
                )
            select.select([self.fileno()], [], [], remaining)
        return found

    def _match(self, windows: list[WindowInfo]) -> WindowInfo | None:
        for window in reversed(windows):  # topmost first
            if not window.mapped or not self.selector.matches(window):
                continue
            if self.pid is None or (window.pid is not None and _descends_from(window.pid, self.pid)):
                return window
        return None

    def _watch(self, window: Any) -> None:
        """Be told when ``window``'s properties change (a title set after mapping, ``WM_STATE`` set by the WM) and
        when its children are mapped or reparented (a client put into a frame). Called before reading them."""
        if window.id in self._watched:
            return
        self._watched.add(window.id)
        window.change_attributes(
            event_mask=X.PropertyChangeMask | X.SubstructureNotifyMask, onerror=xerror.CatchError(*_GONE)
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(xerror.ConnectionClosedError, OSError):
            self._conn.close()

    def __enter__(self) -> WindowWatch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Scanner:
    """One pass over the window tree on an open connection."""

    def __init__(self, conn: Any, watch: Any = None) -> None:
        self._conn = conn
        self._root: Any = conn.screen().root
        self._watch = watch
        atom = conn.get_atom  # cached per connection: one round trip each for the first scan only
        self._wm_state = atom("WM_STATE")
        self._net_wm_name = atom("_NET_WM_NAME")
        self._net_wm_pid = atom("_NET_WM_PID")

    def scan(self) -> list[WindowInfo]:
        root_attributes = self._root.get_attributes()
        managed = bool(root_attributes.all_event_masks & X.SubstructureRedirectMask)
        found = []
        for top in self._root.query_tree().children:  # bottom to top
            try:
                info = self._client_info(top, managed)
            except _GONE:
                continue
            if info is not None:
                found.append(info)
        return found

    def _client_info(self, top: Any, managed: bool) -> WindowInfo | None:
        if self._watch is not None:
            self._watch(top)
        if managed:
            client = self._find_client(top)
            if client is None:
                return None
        else:
            attributes = top.get_attributes()
            if attributes.map_state != X.IsViewable or attributes.override_redirect:
                return None
            client = top
        return self._info(client)

    def _find_client(self, top: Any) -> Any:
        """``top`` or its first descendant (breadth first) with a ``WM_STATE`` other than withdrawn."""
        queue = [top]
        while queue:
            window = queue.pop(0)
            if self._watch is not None:
                self._watch(window)
            state = window.get_property(self._wm_state, self._wm_state, 0, 2)
            if state is not None and state.format == 32 and len(state.value) >= 1:
                return window if state.value[0] != _WITHDRAWN_STATE else None
            queue.extend(window.query_tree().children)
        return None

    def _info(self, window: Any) -> WindowInfo | None:
        attributes = window.get_attributes()
        geometry = window.get_geometry()
        if attributes.win_class == X.InputOnly or geometry.width == 0 or geometry.height == 0:
            return None
        instance, wm_class = self._wm_class(window)
        if wm_class == OWN_WM_CLASS:
            return None
        origin = self._root.translate_coords(window, 0, 0)
        return WindowInfo(
            id=int(window.id),
            title=self._title(window),
            wm_class=wm_class,
            wm_instance=instance,
            pid=self._pid(window),
            x=int(origin.x),
            y=int(origin.y),
            width=int(geometry.width),
            height=int(geometry.height),
            mapped=attributes.map_state == X.IsViewable,
        )

    def _title(self, window: Any) -> str:
        return window_title(window, self._net_wm_name)

    def _wm_class(self, window: Any) -> tuple[str, str]:
        prop = _text(window, Xatom.WM_CLASS)
        if prop is None:
            return "", ""
        # "instance\0class\0"; ICCCM says Latin-1, but apps put UTF-8 there too.
        parts = prop[0].split(b"\0")
        instance, wm_class = [*parts, b"", b""][:2]
        return _decode(instance), _decode(wm_class)

    def _pid(self, window: Any) -> int | None:
        prop = window.get_property(self._net_wm_pid, Xatom.CARDINAL, 0, 1)
        if prop is None or prop.format != 32 or len(prop.value) != 1:
            return None
        return int(prop.value[0]) or None


def window_title(window: Any, net_wm_name: int) -> str:
    """A python-xlib window's title: ``_NET_WM_NAME`` (UTF-8), else ``WM_NAME``; "" when it has neither.
    ``net_wm_name`` is the ``_NET_WM_NAME`` atom on the window's connection. Raises python-xlib's ``BadWindow`` if
    the window is gone."""
    net_name = _text(window, net_wm_name)
    if net_name is not None:
        return net_name[0].decode("utf-8", "replace")
    name = _text(window, Xatom.WM_NAME)
    if name is None:
        return ""
    raw, kind = name
    # ICCCM's STRING is Latin-1; UTF8_STRING is UTF-8; COMPOUND_TEXT is ASCII for plain titles, and we decode
    # anything else as UTF-8 as the most likely guess.
    return raw.decode("latin-1") if kind == Xatom.STRING else raw.decode("utf-8", "replace")


def _text(window: Any, atom: int) -> tuple[bytes, int] | None:
    prop = window.get_full_property(atom, X.AnyPropertyType, sizehint=256)
    if prop is None or prop.format != 8:
        return None
    return bytes(prop.value), int(prop.property_type)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _connect(display: str) -> Any:
    with warnings.catch_warnings():
        # python-xlib leaves its socket open when connecting fails; its ResourceWarning is noise here.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return Display(display)
        except (
            xerror.DisplayError,
            xerror.XauthError,
            xerror.XNoAuthError,
            xerror.ConnectionClosedError,
            OSError,
            # A display number python-xlib maps to an impossible TCP port (":65000"), and the like.
            ValueError,
            OverflowError,
        ) as exc:
            reason = str(exc)
        gc.collect()  # finalise the leaked socket while its warning is still ignored
    raise DisplayError(
        f"cannot open X display {display}: {reason}. Check that it is running and that this user may connect to it"
    )


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether process ``pid`` is ``ancestor`` or one of its descendants (walking up /proc's parent links)."""
    return ancestor in _ancestry(pid)


def _ancestry(pid: int) -> Iterator[int]:
    seen: set[int] = set()
    while pid > 0 and pid not in seen:
        yield pid
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                # "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after its last ")".
                pid = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return
