"""Sharing single windows (docs/protocol.md §8), on a real Xvfb with windows of the tests' own and a Python viewer
that decodes what it gets: nothing of a window covering the shared one is ever sent, input lands in the shared
window only, moves and resizes are followed, several windows stream side by side, and a window that is unmapped
pauses its surface, mapped again resumes it, destroyed ends it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import pytest
from Xlib import X

from impromptu.display import WindowInfo
from impromptu.rtc import IcePolicy, ViewerPeer
from impromptu.stream.framing import EncodedChunk
from tests.pyviewer import PyViewer, sharing, viewer
from tests.xclient import Painter

SHARED = 0x3366CC
OTHER = 0x22AA44
SECRET = (0xE0217B, 0x13F7A2)
"""The secret window's pattern: 8x8 squares of two colours that nothing else here uses."""
INPUT = X.ButtonPressMask | X.ButtonReleaseMask | X.KeyPressMask | X.KeyReleaseMask | X.PointerMotionMask


def info(painter: Painter, x: int, y: int, w: int, h: int, title: str = "shared") -> WindowInfo:
    return WindowInfo(painter.id, title, "", "", None, x, y, w, h, True)


def near(picture: np.ndarray[Any, Any], colour: int, tolerance: int = 40) -> np.ndarray[Any, Any]:
    """Which pixels of a decoded RGB picture are within ``tolerance`` of ``colour`` on every channel."""
    target = np.array([(colour >> 16) & 255, (colour >> 8) & 255, colour & 255])
    return np.asarray((np.abs(picture.astype(int) - target) <= tolerance).all(axis=2))


class Pictures:
    """Decodes a viewer's frames, one H.264 decoder per surface, checking every picture."""

    def __init__(self, v: PyViewer, check: Callable[[int, np.ndarray[Any, Any]], None]) -> None:
        self._viewer = v
        self._check = check
        self._decoders: dict[int, Any] = {}
        self.latest: dict[int, np.ndarray[Any, Any]] = {}
        """The last picture of each surface."""
        self.count = 0

    async def next(self) -> tuple[EncodedChunk, list[np.ndarray[Any, Any]]]:
        chunk = await asyncio.wait_for(self._viewer.frames.get(), 10)
        decoder = self._decoders.setdefault(chunk.surface, av.CodecContext.create("h264", "r"))
        pictures = [frame.to_ndarray(format="rgb24") for frame in decoder.decode(av.Packet(chunk.data))]
        for picture in pictures:
            self.count += 1
            self._check(chunk.surface, picture)
            self.latest[chunk.surface] = picture
        return chunk, pictures

    async def until(self, surface: int, colour: int, shape: tuple[int, int] | None = None) -> np.ndarray[Any, Any]:
        """Decode until the latest picture of ``surface`` is (almost) all ``colour`` (and ``shape`` high, wide):
        a still surface sends nothing more, so its latest picture may have come while waiting for another's. Like
        a page, it asks for a keyframe when nothing fitting came for a while: a fragment lost on the unreliable
        channel (a loaded machine) loses its frame, and a still window sends no other (protocol.md §4)."""
        deadline = time.monotonic() + 10
        while True:
            picture = self.latest.get(surface)
            fits = picture is not None and (shape is None or picture.shape[:2] == shape)
            if fits and picture is not None and near(picture, colour).mean() > 0.95:
                return picture
            try:
                await asyncio.wait_for(self.next(), 2)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
                self._viewer.send({"type": "keyframe.request", "surface": surface})


def no_secret(surface: int, picture: np.ndarray[Any, Any]) -> None:
    for colour in SECRET:
        assert not near(picture, colour).any(), f"the secret window's colour {colour:#x} reached a viewer"


def screen_has(control: Any, colour: int, x: int, y: int, w: int, h: int) -> bool:
    image = control.screen().root.get_image(x, y, w, h, X.ZPixmap, 0xFFFFFFFF)
    bgra = np.frombuffer(image.data, np.uint8).reshape(h, w, 4).astype(np.uint32)
    return bool((((bgra[:, :, 2] << 16) | (bgra[:, :, 1] << 8) | bgra[:, :, 0]) == colour).any())


async def test_no_frame_of_a_shared_window_shows_the_window_over_it(
    xvfb_display: str, control: Any, painters: Callable[..., Painter]
) -> None:
    shared = painters(40, 40, 240, 160, (SHARED,))
    secret = painters(160, 100, 200, 150, SECRET)
    assert screen_has(control, SECRET[0], 40, 40, 240, 160), "the secret window covers part of the shared one"
    async with sharing(xvfb_display, windows=(info(shared, 40, 40, 240, 160, "the shared one"),)) as (s, server):
        v = viewer(s, server, s.keys.control)
        pictures = Pictures(v, no_secret)
        try:
            await v.connect()
            config = await v.wait_control(lambda m: m["type"] == "config")
            assert config["surface"] == 1 and config["title"] == "the shared one"
            assert (config["width"], config["height"]) == (240, 160)
            assert not [m for m in v.configs if m["type"] == "config" and m["surface"] == 0], "no whole screen"
            picture = await pictures.until(1, SHARED)
            assert picture.shape == (160, 240, 3)

            win = control.create_resource_object("window", secret.id)
            colour = SHARED
            for change in ({"x": 20, "y": 120}, {"stack_mode": X.Below}, {"stack_mode": X.Above}):
                win.configure(**change)  # moved over another part, lowered under it, raised over it again
                control.sync()
                assert screen_has(control, SECRET[1], 0, 0, 640, 480)
                colour = OTHER if colour == SHARED else SHARED
                shared.paint((colour,))  # drawing under the secret window makes frames: none may show it
                await pictures.until(1, colour)
            v.send({"type": "keyframe.request", "surface": 1})
            while not (await pictures.next())[0].keyframe:
                pass
            assert pictures.count >= 5
        finally:
            await v.close()


async def test_each_hub_on_a_shared_video_channel_keeps_its_drain_callback() -> None:
    """The hubs of several surfaces share a viewer's one video channel: a second hub asking to hear of the drain must
    not silence the first (which would leave its viewer skipping frames until the next change)."""
    peer = ViewerPeer("p", IcePolicy(), lambda p: None, lambda p, m: None, lambda p: None)
    try:
        called: list[str] = []
        peer.notify_drained(100, lambda: called.append("first"))
        peer.notify_drained(1000, lambda: called.append("second"))
        peer.video._addBufferedAmount(5000)
        peer.video._addBufferedAmount(-4950)  # down to 50: below both thresholds
        assert sorted(called) == ["first", "second"]
        peer.video._addBufferedAmount(5000)
        peer.video._addBufferedAmount(-5000)
        assert len(called) == 2, "each callback is called once, then forgotten"
    finally:
        await peer.close()


def click(x: int, y: int, down: bool = True, surface: Any = 1, button: int = 1) -> dict[str, Any]:
    return {"type": "input.button", "surface": surface, "button": button, "down": down, "x": x, "y": y}


async def test_input_lands_in_the_shared_window_and_nowhere_else(
    xvfb_display: str, control: Any, painters: Callable[..., Painter]
) -> None:
    shared = painters(100, 100, 200, 150, (SHARED,), input_mask=INPUT)
    # Over the shared window's lower right part; an ordinary window (not a menu: never raised over), so a click
    # there raises the shared window first.
    secret = painters(150, 120, 200, 150, SECRET, input_mask=INPUT, title="secret")
    secret_win = control.create_resource_object("window", secret.id)
    secret_win.set_input_focus(X.RevertToParent, X.CurrentTime)  # the local user is typing into it
    control.sync()
    async with sharing(xvfb_display, windows=(info(shared, 100, 100, 200, 150),)) as (session, server):
        v = viewer(session, server, session.keys.control)
        try:
            await v.connect()
            await v.frames.get()

            def press_at(x: int, y: int, detail: int = 1) -> Callable[[Any], bool]:
                return lambda e: e.type == X.ButtonPress and e.detail == detail and (e.event_x, e.event_y) == (x, y)

            # At the edges, and beyond them (clamped), where the secret window covers the shared one too.
            for (x, y), landed in (
                ((0, 0), (0, 0)),
                ((199, 149), (199, 149)),
                ((120, 100), (120, 100)),
                ((-40, -7), (0, 0)),
                ((500, 900), (199, 149)),
                ((250, 20), (199, 20)),
            ):
                shared.events.clear()
                v.send(click(x, y))
                v.send(click(x, y, down=False))
                await asyncio.to_thread(shared.wait_event, press_at(*landed))
            v.send({"type": "input.wheel", "surface": 1, "dx": 0, "dy": 1, "x": -5, "y": 400})
            await asyncio.to_thread(shared.wait_event, press_at(0, 149, detail=5))

            # Keys go to the shared window even though another one had the focus.
            secret_win.set_input_focus(X.RevertToParent, X.CurrentTime)
            control.sync()
            v.send({"type": "input.key", "surface": 1, "code": "KeyA", "key": "a", "down": True})
            v.send({"type": "input.key", "surface": 1, "code": "KeyA", "key": "a", "down": False})
            await asyncio.to_thread(shared.wait_event, lambda e: e.type == X.KeyPress)

            # The local user raises the secret window again; a viewer's mere hover over the part it covers must not
            # reach it either (checked with everything else at the end).
            secret_win.configure(stack_mode=X.Above)
            control.sync()
            v.send({"type": "input.move", "surface": 1, "x": 190, "y": 140})

            # Input for a surface that does not exist (0: the whole screen is not shared) is dropped; then a
            # marker: once it has arrived, anything dropped would have arrived before it.
            shared.events.clear()
            for bad in (click(200, 200, surface=0), click(20, 20, surface=7), click(20, 20, surface="1")):
                v.send(bad)
                v.send({**bad, "down": False})
            v.send({"type": "input.key", "code": "KeyB", "key": "b", "down": True})  # no surface: 0
            v.send(click(5, 6))
            v.send(click(5, 6, down=False))
            await asyncio.to_thread(shared.wait_event, press_at(5, 6))
            presses = [e for e in shared.events if e.type in (X.ButtonPress, X.KeyPress)]
            assert [(e.event_x, e.event_y) for e in presses] == [(5, 6)], "dropped input reached the window"
            events = await asyncio.to_thread(secret.sync)
            reached = [e for e in events if e.type in (X.ButtonPress, X.KeyPress, X.MotionNotify)]
            assert reached == [], "input reached the secret window (a click, a key, or the pointer moving over it)"
        finally:
            await v.close()


async def test_moves_and_resizes_are_followed(
    xvfb_display: str, control: Any, painters: Callable[..., Painter]
) -> None:
    shared = painters(30, 20, 200, 120, (SHARED,), input_mask=INPUT)
    win = control.create_resource_object("window", shared.id)
    async with sharing(xvfb_display, windows=(info(shared, 30, 20, 200, 120),)) as (session, server):
        v = viewer(session, server, session.keys.control)
        pictures = Pictures(v, lambda surface, picture: None)
        try:
            await v.connect()
            await pictures.until(1, SHARED, (120, 200))

            win.configure(x=300, y=250)  # a move: same stream, input lands at the new place
            control.sync()
            v.send(click(10, 11))
            v.send(click(10, 11, down=False))
            press = await asyncio.to_thread(shared.wait_event, lambda e: e.type == X.ButtonPress)
            assert (press.root_x, press.root_y) == (310, 261)

            started = time.monotonic()
            win.configure(width=300, height=201)  # odd: the stream is 300x200
            control.sync()
            config = await v.wait_control(lambda m: m["type"] == "config" and m["width"] == 300)
            assert time.monotonic() - started < 1.0, "the new size was not followed within 1 s"
            assert (config["surface"], config["height"]) == (1, 200)
            await pictures.until(1, SHARED, (200, 300))
            shared.events.clear()
            v.send(click(299, 199))
            v.send(click(299, 199, down=False))
            press = await asyncio.to_thread(shared.wait_event, lambda e: e.type == X.ButtonPress)
            assert (press.event_x, press.event_y) == (299, 199)
        finally:
            await v.close()


async def test_two_windows_stream_side_by_side(
    xvfb_display: str, control: Any, painters: Callable[..., Painter]
) -> None:
    first = painters(10, 10, 160, 120, (SHARED,))
    second = painters(300, 200, 200, 100, (OTHER,))
    windows = (info(first, 10, 10, 160, 120, "first"), info(second, 300, 200, 200, 100, "second"))

    def own_colour_only(surface: int, picture: np.ndarray[Any, Any]) -> None:
        other = OTHER if surface == 1 else SHARED
        assert not near(picture, other).any(), f"surface {surface} shows the other window"

    async with sharing(xvfb_display, windows=windows) as (session, server):
        v = viewer(session, server, session.keys.view)
        pictures = Pictures(v, own_colour_only)
        try:
            await v.connect()
            one = await v.wait_control(lambda m: m["type"] == "config" and m["surface"] == 1)
            two = await v.wait_control(lambda m: m["type"] == "config" and m["surface"] == 2)
            assert (one["title"], one["width"], one["height"]) == ("first", 160, 120)
            assert (two["title"], two["width"], two["height"]) == ("second", 200, 100)
            await pictures.until(1, SHARED, (120, 160))
            await pictures.until(2, OTHER, (100, 200))
            # Each surface has its own frame numbers and keyframes.
            v.send({"type": "keyframe.request", "surface": 2})
            while True:
                chunk, _ = await pictures.next()
                if chunk.surface == 2 and chunk.keyframe:
                    break
        finally:
            await v.close()


async def test_unmapped_pauses_mapped_resumes_destroyed_ends(
    xvfb_display: str, control: Any, painters: Callable[..., Painter]
) -> None:
    shared = painters(50, 50, 120, 80, (SHARED,))
    win = control.create_resource_object("window", shared.id)

    def state(name: str) -> Callable[[dict[str, Any]], bool]:
        return lambda m: m["type"] == "surface.state" and m["surface"] == 1 and m["state"] == name

    async with sharing(xvfb_display, windows=(info(shared, 50, 50, 120, 80),)) as (session, server):
        v = viewer(session, server, session.keys.control)
        late = viewer(session, server, session.keys.view)
        try:
            await v.connect()
            await v.frames.get()
            win.unmap()
            control.sync()
            paused = await v.wait_control(state("paused"))
            assert paused["reason"]
            await late.connect()  # a viewer joining now hears of the pause with the config
            await late.wait_control(state("paused"))
            assert [m["type"] for m in late.configs[:2]] == ["config", "surface.state"]

            win.map()
            control.sync()
            await v.wait_control(state("live"))
            while not (await asyncio.wait_for(v.frames.get(), 10)).keyframe:
                pass  # showing again starts from a keyframe

            assert not session.ended.done()
            win.destroy()
            control.sync()
            ended = await v.wait_control(state("ended"))
            assert ended["reason"]
            assert await asyncio.wait_for(asyncio.shield(session.ended), 10) == "the shared window was closed"
        finally:
            await v.close()
            await late.close()


CLI = (sys.executable, "-m", "impromptu")


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_share_with_no_such_window_is_one_line_and_status_1(xvfb_display: str) -> None:
    result = run_cli("share", "--display", xvfb_display, "--bind", "127.0.0.1:0", "--window-title", "NOPE")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "title matching 'NOPE'" in result.stderr, result.stderr
    assert result.stdout == ""


def test_a_title_that_matches_several_windows_is_refused_not_guessed(
    xvfb_display: str, painters: Callable[..., Painter]
) -> None:
    """Two windows match: sharing either might show one the user did not mean to, so neither is shared."""
    first = painters(20, 20, 100, 60, (SHARED,), title="impromptu-twin one")
    second = painters(200, 20, 100, 60, (OTHER,), title="impromptu-twin two")
    result = run_cli("share", "--display", xvfb_display, "--bind", "127.0.0.1:0", "--window-title", "impromptu-twin")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "2 windows have a title matching 'impromptu-twin'" in result.stderr, result.stderr
    assert f"{first.id:#x}" in result.stderr and f"{second.id:#x}" in result.stderr
    assert result.stdout == "", "no link: nothing is shared"


def test_share_ends_with_status_0_when_the_last_window_closes(
    xvfb_display: str, control: Any, painters: Callable[..., Painter]
) -> None:
    shared = painters(20, 20, 100, 60, (SHARED,), title="impromptu-share-test")
    proc = subprocess.Popen(
        [*CLI, "share", "--display", xvfb_display, "--bind", "127.0.0.1:0", "--window-title", "^impromptu-share-test$"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the desktop is up (or exits)
        assert first.startswith("Operator link: "), (first, proc.stderr and proc.stderr.read())
        control.create_resource_object("window", shared.id).destroy()
        control.sync()
        assert proc.wait(15) == 0
        assert proc.stderr is not None
        assert "the shared window was closed; sharing ended" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


APP = """
import os, select, sys
from Xlib import X, Xatom
from Xlib.display import Display
d = Display()
screen = d.screen()
w = screen.root.create_window(10, 10, 160, 100, 0, screen.root_depth, event_mask=X.ExposureMask)
w.set_wm_name(sys.argv[1])
w.change_property(d.get_atom("_NET_WM_PID"), Xatom.CARDINAL, 32, [os.getpid()])
gc = w.create_gc(foreground=0x3366CC)
w.map()
while True:
    while d.pending_events():
        if d.next_event().type == X.Expose:
            w.fill_rectangle(gc, 0, 0, 160, 100)
    d.flush()
    select.select([d.fileno()], [], [])
"""


def test_vdisplay_run_shares_the_apps_window_once_it_is_mapped() -> None:
    proc = subprocess.Popen(
        [
            *CLI,
            "vdisplay",
            "run",
            "--size",
            "320x240",
            "--bind",
            "127.0.0.1:0",
            *("--window-title", "^the app$"),
            "--",
            sys.executable,
            "-c",
            APP,
            "the app",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()  # blocks until the app's window is shared (or the command ends)
        assert first.startswith("Operator link: "), (first, proc.stderr.read())
        proc.terminate()
        assert proc.wait(15) == 128 + 15
        assert "'the app': 160x100" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_vdisplay_run_whose_app_exits_before_its_window_maps_is_one_line() -> None:
    result = run_cli("vdisplay", "run", "--bind", "127.0.0.1:0", "--window-class", "nothing", "--", "true")
    assert result.returncode == 1
    assert result.stderr == (
        "impromptu: error: true exited (status 0) before its window (class 'nothing') was mapped\n"
    ), result.stderr


def test_surfaces_are_numbered_in_the_order_the_options_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from impromptu import cli
    from impromptu.runner import RunOptions

    seen: list[RunOptions] = []

    async def fake_share(options: RunOptions, display: str) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(cli, "run_share", fake_share)
    args = ["share", "--display", ":0", "--window-title", "b", "--window", "0x2a", "--window-class=c"]
    result = CliRunner().invoke(cli.app, [*args, "--window-title", "--window"])  # a title that looks like an option
    assert result.exit_code == 0, result.output
    (options,) = seen
    # A value that looks like an option makes the order unknown: each kind in turn, in the order given.
    assert [(w.ids, w.title_regex, w.wm_class) for w in options.windows] == [
        ((0x2A,), None, None),
        ((), "b", None),
        ((), "--window", None),
        ((), None, "c"),
    ]
    seen.clear()
    assert CliRunner().invoke(cli.app, args).exit_code == 0
    assert [(w.ids, w.title_regex, w.wm_class) for w in seen[0].windows] == [
        ((), "b", None),
        ((0x2A,), None, None),
        ((), None, "c"),
    ]
