"""Finding windows: ``list_windows``/``find_windows``/``wait_for_window`` and ``impromptu windows``, against real
Xvfb displays, real xterms and python-xlib windows of the tests' own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from Xlib import X, Xatom
from Xlib.display import Display

from impromptu.display import Xvfb
from impromptu.display.windows import (
    OWN_WM_CLASS,
    WindowInfo,
    WindowSelector,
    WindowWatch,
    find_windows,
    list_windows,
    wait_for_window,
)
from impromptu.errors import DisplayError, UsageError, WindowNotFound
from tests.test_cli import assert_one_line_error, impromptu

START_TIMEOUT_S = 30.0  # an xterm on a loaded CI machine
UNICODE_TITLE = "Ünïcode ✓"


class Client:
    """An X client of the test's own making top-level windows with the properties apps set on theirs."""

    def __init__(self, display: str) -> None:
        self.d = Display(display)
        self.root: Any = self.d.screen().root

    def window(
        self,
        x: int,
        y: int,
        w: int,
        h: int,
        *,
        name: str | None = None,
        net_name: str | None = None,
        wm_class: tuple[str, str] | None = None,
        pid: int | None = None,
        override_redirect: bool = False,
        input_only: bool = False,
        parent: Any = None,
        mapped: bool = True,
    ) -> Any:
        parent = parent or self.root
        if input_only:
            window = parent.create_window(x, y, w, h, 0, 0, window_class=X.InputOnly)
        else:
            depth = self.d.screen().root_depth
            window = parent.create_window(x, y, w, h, 0, depth, override_redirect=override_redirect)
        if name is not None:
            window.change_property(Xatom.WM_NAME, Xatom.STRING, 8, name.encode("latin-1"))
        if net_name is not None:
            window.change_property(self.atom("_NET_WM_NAME"), self.atom("UTF8_STRING"), 8, net_name.encode())
        if wm_class is not None:
            window.change_property(Xatom.WM_CLASS, Xatom.STRING, 8, "\0".join(wm_class).encode() + b"\0")
        if pid is not None:
            window.change_property(self.atom("_NET_WM_PID"), Xatom.CARDINAL, 32, [pid])
        if mapped:
            window.map()
        self.d.sync()
        return window

    def atom(self, name: str) -> int:
        return int(self.d.intern_atom(name))

    def close(self) -> None:
        self.d.close()


class Xterm:
    """An xterm (run by ``sh`` when ``via_shell``, so that its pid is a child of ``proc.pid``) and its window."""

    def __init__(self, display: str, wm_class: str, title: str, geometry: str, via_shell: bool = False) -> None:
        command = ["xterm", "-class", wm_class, "-title", title, "-geometry", geometry, "-e", "sleep", "600"]
        if via_shell:  # `sh -c 'xterm …; true'`: not the last command, so sh forks it instead of exec'ing it
            command = ["sh", "-c", 'read go && "$@"; true', "sh", *command]
        self.proc = subprocess.Popen(
            command,
            env={**os.environ, "DISPLAY": display},
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.selector = WindowSelector(wm_class=wm_class)

    def go(self) -> None:
        """Let a ``via_shell`` xterm start."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        os.killpg(self.proc.pid, signal.SIGKILL)  # its session: sh, xterm and the sleep inside
        self.proc.wait()


@pytest.fixture(scope="module")
def xterms(xvfb_display: str) -> Iterator[dict[str, tuple[Xterm, WindowInfo]]]:
    """Two xterms with their own class and title, mapped."""
    started = [
        Xterm(xvfb_display, "FooTerm", "bar one", "20x5+30+40"),
        Xterm(xvfb_display, "BazTerm", "qux two", "20x5+300+40"),
    ]
    try:
        yield {
            xterm.selector.wm_class or "": (
                xterm,
                wait_for_window(xvfb_display, xterm.selector, START_TIMEOUT_S, pid=xterm.proc.pid),
            )
            for xterm in started
        }
    finally:
        for xterm in started:
            xterm.stop()


@pytest.fixture(scope="module")
def client(xvfb_display: str) -> Iterator[Client]:
    c = Client(xvfb_display)
    yield c
    c.close()


@pytest.fixture
def own_client(xvfb_display: str) -> Iterator[Client]:
    """A client for one test: its windows go when it closes."""
    c = Client(xvfb_display)
    yield c
    c.close()


def by_id(windows: list[WindowInfo]) -> dict[int, WindowInfo]:
    return {w.id: w for w in windows}


def test_lists_xterms_with_title_class_pid_and_geometry(
    xvfb_display: str, xterms: dict[str, tuple[Xterm, WindowInfo]], client: Client
) -> None:
    listed = by_id(list_windows(xvfb_display))
    for wm_class, title, (left, top) in (("FooTerm", "bar one", (30, 40)), ("BazTerm", "qux two", (300, 40))):
        xterm, seen = xterms[wm_class]
        window = listed[seen.id]
        geometry = client.d.create_resource_object("window", window.id).get_geometry()
        assert (window.title, window.wm_class, window.wm_instance) == (title, wm_class, "xterm")
        assert window.pid == xterm.proc.pid
        # The content's corner, inside the border, on the root window.
        assert (window.x, window.y) == (left + geometry.border_width, top + geometry.border_width)
        assert (window.width, window.height) == (geometry.width, geometry.height) and window.width > 20
        assert window.mapped


def test_lists_windows_with_the_properties_apps_set(xvfb_display: str, own_client: Client) -> None:
    unicode = own_client.window(
        300, 200, 120, 60, name="fallback", net_name=UNICODE_TITLE, wm_class=("uni", "UniClass"), pid=4242
    )
    latin = own_client.window(10, 300, 50, 40, name="Café")
    bare = own_client.window(100, 300, 30, 20)
    listed = by_id(list_windows(xvfb_display))
    assert listed[unicode.id] == WindowInfo(
        id=unicode.id,
        title=UNICODE_TITLE,  # _NET_WM_NAME wins over WM_NAME
        wm_class="UniClass",
        wm_instance="uni",
        pid=4242,
        x=300,
        y=200,
        width=120,
        height=60,
        mapped=True,
    )
    assert (listed[latin.id].title, listed[latin.id].wm_class, listed[latin.id].pid) == ("Café", "", None)
    assert listed[bare.id].title == "" and listed[bare.id].geometry == "30x20+100+300"


def test_leaves_out_override_redirect_unmapped_input_only_and_own_windows(
    xvfb_display: str, own_client: Client
) -> None:
    kept = own_client.window(20, 20, 40, 40, name="kept")
    left_out = [
        own_client.window(20, 20, 40, 40, name="menu", override_redirect=True),
        own_client.window(20, 20, 40, 40, name="hidden", mapped=False),
        own_client.window(20, 20, 40, 40, name="input", input_only=True),
        own_client.window(20, 20, 40, 40, name="ours", wm_class=("impromptu", OWN_WM_CLASS)),
    ]
    listed = by_id(list_windows(xvfb_display))
    assert kept.id in listed
    assert not {w.id for w in left_out} & set(listed)


def test_lists_bottom_to_top(xvfb_display: str, own_client: Client) -> None:
    lower = own_client.window(0, 0, 20, 20, name="lower")
    upper = own_client.window(0, 0, 20, 20, name="upper")
    ids = [w.id for w in list_windows(xvfb_display)]
    assert ids.index(lower.id) < ids.index(upper.id)
    lower.configure(stack_mode=X.Above)
    own_client.d.sync()
    ids = [w.id for w in list_windows(xvfb_display)]
    assert ids.index(upper.id) < ids.index(lower.id)


def test_find_windows_by_id_title_and_class(xvfb_display: str, xterms: dict[str, tuple[Xterm, WindowInfo]]) -> None:
    foo, baz = xterms["FooTerm"][1].id, xterms["BazTerm"][1].id
    assert [w.id for w in find_windows(xvfb_display, ids=(baz,))] == [baz]
    assert [w.id for w in find_windows(xvfb_display, title_regex=r"^bar")] == [foo]
    assert [w.id for w in find_windows(xvfb_display, wm_class="footerm")] == [foo]  # class, any case
    assert {w.id for w in find_windows(xvfb_display, wm_class="xterm")} == {foo, baz}  # or instance
    assert [w.id for w in find_windows(xvfb_display, title_regex="two", wm_class="xterm")] == [baz]  # both hold
    with pytest.raises(WindowNotFound):
        find_windows(xvfb_display, ids=(foo,), wm_class="BazTerm")


def test_find_windows_says_what_it_looked_for(xvfb_display: str, xterms: dict[str, tuple[Xterm, WindowInfo]]) -> None:
    with pytest.raises(WindowNotFound) as missing:
        find_windows(xvfb_display, title_regex="^no such title$", wm_class="Nope")
    message = str(missing.value)
    assert "'^no such title$'" in message and "'Nope'" in message and xvfb_display in message
    assert "\n" not in message
    with pytest.raises(WindowNotFound, match="0x7777777"):
        find_windows(xvfb_display, ids=(0x7777777,))


def test_a_bad_regex_is_a_usage_error(xvfb_display: str) -> None:
    with pytest.raises(UsageError) as bad:
        find_windows(xvfb_display, title_regex="bar (")
    assert "'bar ('" in str(bad.value) and "\n" not in str(bad.value)


def test_an_unreachable_display_is_a_display_error() -> None:
    with pytest.raises(DisplayError, match=":987"):
        list_windows(":987")


def test_wait_wakes_when_a_window_maps_later(xvfb_display: str) -> None:
    with WindowWatch(xvfb_display, WindowSelector(wm_class="LateTerm")) as watch:
        assert watch.poll() is None  # looked once and found nothing: what follows must come from X's events
        xterm = Xterm(xvfb_display, "LateTerm", "late", "10x2+0+0")
        try:
            found = watch.wait(START_TIMEOUT_S)
            assert (found.wm_class, found.title, found.pid, found.mapped) == ("LateTerm", "late", xterm.proc.pid, True)
        finally:
            xterm.stop()


def test_wait_wakes_when_a_mapped_window_gets_its_title(xvfb_display: str, own_client: Client) -> None:
    window = own_client.window(0, 0, 30, 30)
    with WindowWatch(xvfb_display, WindowSelector(title_regex="^titled later")) as watch:
        assert watch.poll() is None
        window.change_property(own_client.atom("_NET_WM_NAME"), own_client.atom("UTF8_STRING"), 8, b"titled later")
        own_client.d.sync()
        assert watch.wait(10).id == window.id


def test_wait_for_window_in_a_thread_only_takes_the_apps_windows(xvfb_display: str, own_client: Client) -> None:
    """A window of the same class is already there; the wait must take the one the app (a shell) starts."""
    other = own_client.window(0, 100, 30, 30, name="not the app's", wm_class=("xterm", "AppTerm"), pid=os.getpid())
    xterm = Xterm(xvfb_display, "AppTerm", "the app's", "10x2+0+100", via_shell=True)
    results: list[WindowInfo | BaseException] = []

    def wait() -> None:
        try:
            results.append(wait_for_window(xvfb_display, xterm.selector, START_TIMEOUT_S, pid=xterm.proc.pid))
        except BaseException as exc:
            results.append(exc)

    waiter = threading.Thread(target=wait, name="wait-for-window")
    try:
        waiter.start()
        xterm.go()
        waiter.join(START_TIMEOUT_S + 5)
        assert not waiter.is_alive() and len(results) == 1
        found = results[0]
        assert isinstance(found, WindowInfo), found
        assert found.title == "the app's" and found.id != other.id
        assert found.pid is not None and found.pid != xterm.proc.pid  # a child of the shell
    finally:
        xterm.stop()
        waiter.join()


def test_wait_for_window_gives_up_after_its_timeout(xvfb_display: str) -> None:
    start = time.monotonic()
    with pytest.raises(WindowNotFound) as missing:
        wait_for_window(xvfb_display, WindowSelector(title_regex="^never$"), 0.3)
    assert 0.3 <= time.monotonic() - start < 5
    assert "'^never$'" in str(missing.value) and "0.3 s" in str(missing.value)


@pytest.fixture
def managed_display() -> Iterator[tuple[str, Client]]:
    """A display of its own with a window manager of the test's: a client holding SubstructureRedirect on the root,
    which puts windows into frames and sets WM_STATE itself (request by request, so nothing races)."""
    with Xvfb((320, 240)) as xvfb:
        wm = Client(xvfb.name)
        try:
            wm.root.change_attributes(event_mask=X.SubstructureRedirectMask)
            wm.d.sync()
            yield xvfb.name, wm
        finally:
            wm.close()


def manage(wm: Client, client_window: Any, x: int, y: int, state: int = 1) -> Any:
    """Reparent ``client_window`` into a new frame at (x, y), 5 px in from its left and 15 px down; map both unless
    ``state`` is iconic (3); set WM_STATE."""
    frame = wm.window(x, y, 200, 100, mapped=False)
    client_window = wm.d.create_resource_object("window", client_window.id)  # the WM's requests, on its connection
    client_window.reparent(frame, 5, 15)
    if state != 3:
        client_window.map()
        frame.map()
    wm_state = wm.atom("WM_STATE")
    client_window.change_property(wm_state, wm_state, 32, [state, 0])
    wm.d.sync()
    return frame


def test_with_a_window_manager_lists_client_windows_not_frames(managed_display: tuple[str, Client]) -> None:
    display, wm = managed_display
    app = Client(display)
    try:
        normal = app.window(0, 0, 100, 50, name="normal", wm_class=("app", "App"), mapped=False)
        iconic = app.window(0, 0, 60, 40, name="iconic", mapped=False)
        frame = manage(wm, normal, 40, 30)
        manage(wm, iconic, 0, 0, state=3)
        wm.window(0, 200, 320, 40, name="panel")  # the WM's own, with no WM_STATE anywhere below it
        listed = list_windows(display)
        assert [(w.id, w.title, w.mapped) for w in listed] == [
            (normal.id, "normal", True),
            (iconic.id, "iconic", False),
        ]
        assert listed[0].geometry == "100x50+45+45" and listed[0].id != frame.id
    finally:
        app.close()


def test_with_a_window_manager_wait_wakes_on_wm_state(managed_display: tuple[str, Client]) -> None:
    display, wm = managed_display
    app = Client(display)
    try:
        window = app.window(0, 0, 100, 50, name="framed", mapped=False)
        frame = wm.window(10, 10, 200, 100, mapped=False)
        managed = wm.d.create_resource_object("window", window.id)
        managed.reparent(frame, 0, 0)
        managed.map()
        frame.map()
        wm.d.sync()
        with WindowWatch(display, WindowSelector(title_regex="framed")) as watch:
            assert watch.poll() is None  # mapped in its frame, but not managed yet
            wm_state = wm.atom("WM_STATE")
            managed.change_property(wm_state, wm_state, 32, [1, 0])
            wm.d.sync()
            assert watch.wait(10).id == window.id
    finally:
        app.close()


def test_cli_windows_json(xvfb_display: str, xterms: dict[str, tuple[Xterm, WindowInfo]], client: Client) -> None:
    xterm, seen = xterms["FooTerm"]
    result = impromptu("windows", "--display", xvfb_display, "--json")
    assert result.returncode == 0, result.stderr
    windows = json.loads(result.stdout)
    assert isinstance(windows, list)
    entry = next(w for w in windows if w["id"] == seen.id)
    assert entry == {
        "id": seen.id,
        "id_hex": hex(seen.id),
        "title": "bar one",
        "class": "FooTerm",
        "instance": "xterm",
        "pid": xterm.proc.pid,
        "x": seen.x,
        "y": seen.y,
        "width": seen.width,
        "height": seen.height,
        "mapped": True,
    }


def test_cli_windows_table(xvfb_display: str, xterms: dict[str, tuple[Xterm, WindowInfo]], own_client: Client) -> None:
    own_client.window(0, 0, 10, 10, net_name=UNICODE_TITLE + "\nsecond line")
    result = impromptu("windows", "--display", xvfb_display)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "GEOMETRY", "PID", "CLASS", "TITLE"]
    seen = xterms["FooTerm"][1]
    row = next(r for r in rows if r.startswith(seen.id_hex + " "))
    assert row.split(maxsplit=4) == [seen.id_hex, seen.geometry, str(seen.pid), "FooTerm", "bar one"]
    assert header.index("TITLE") == row.index("bar one")  # aligned
    assert any(r.endswith(UNICODE_TITLE + " second line") for r in rows)  # one row, even for a two-line title


def test_cli_windows_without_a_display() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = impromptu("windows", env=env)
    assert result.returncode == 2
    assert_one_line_error(result, "DISPLAY")


def test_cli_windows_on_an_unreachable_display() -> None:
    result = impromptu("windows", "--display", ":987")
    assert result.returncode == 1
    assert_one_line_error(result, ":987")


def test_wait_takes_the_topmost_of_several(xvfb_display: str, own_client: Client) -> None:
    own_client.window(0, 0, 20, 20, name="twin")
    upper = own_client.window(0, 0, 20, 20, name="twin")
    assert wait_for_window(xvfb_display, WindowSelector(title_regex="^twin$"), 10).id == upper.id
