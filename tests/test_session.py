"""A sharing session against a Python viewer: authenticated offers and answers, a decodable stream that
matches the screen, input only for those who hold the control key, and nothing sent while idle."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import av
import pytest
from Xlib import X

from impromptu.control import ControlMode
from impromptu.link import LinkKeys
from impromptu.rtc import ViewerPeer
from impromptu.session import ShareSession
from impromptu.signaling import SignalingServer
from tests.harness import wait_until
from tests.pyviewer import PyViewer, sharing, viewer
from tests.xclient import XWindow


@pytest.fixture
async def shared(xvfb_display: str) -> AsyncIterator[tuple[ShareSession, SignalingServer]]:
    async with sharing(xvfb_display) as pair:
        yield pair


async def next_frame(v: PyViewer) -> Any:
    return await asyncio.wait_for(v.frames.get(), 10)


async def test_control_viewer_gets_a_decodable_stream_of_the_screen(
    shared: tuple[ShareSession, SignalingServer], xvfb_display: str
) -> None:
    session, server = shared
    painter = XWindow(xvfb_display, 0, 0, 640, 480)
    painter.fill(0xFF0000)
    v = viewer(session, server, session.keys.control)
    try:
        last = await v.connect()
        assert last["type"] == "offer"
        first = await next_frame(v)
        assert first.keyframe, "a new viewer starts at a keyframe"
        assert v.configs[0]["type"] == "config" and v.configs[0]["width"] == 640
        decoder = av.CodecContext.create("h264", "r")
        (picture,) = decoder.decode(av.Packet(first.data))
        rgb = picture.to_ndarray(format="rgb24")
        assert rgb[240, 320, 0] > 200 and rgb[240, 320, 1] < 60, "the red window is in the picture"

        # Draw something new: a frame follows, and decodes to it.
        painter.fill(0x0000FF)
        for _ in range(10):
            (picture,) = decoder.decode(av.Packet((await next_frame(v)).data))
            if picture.to_ndarray(format="rgb24")[240, 320, 2] > 200:
                break
        else:
            pytest.fail("the blue window never reached the viewer")
    finally:
        await v.close()
        painter.close()


async def test_a_viewer_without_the_key_is_rejected(shared: tuple[ShareSession, SignalingServer]) -> None:
    session, server = shared
    v = viewer(session, server, LinkKeys.generate().control)
    try:
        last = await v.connect()
        assert last == {"type": "reject", "peer": last["peer"], "reason": "not authorised"}
        assert v.frames.empty() and session.viewers == 0
    finally:
        await v.close()


async def test_idle_desktop_sends_nothing_and_input_reaches_x(
    shared: tuple[ShareSession, SignalingServer], xvfb_display: str
) -> None:
    session, server = shared
    v = viewer(session, server, session.keys.control)
    watcher = XWindow(xvfb_display, 100, 100, 200, 200, X.ButtonPressMask)
    try:
        await v.connect()
        await next_frame(v)
        # Let the stream settle, then nothing changes on screen: nothing must be encoded or sent.
        while True:
            try:
                await asyncio.wait_for(v.frames.get(), 0.5)
            except TimeoutError:
                break
        frames_before = session.surfaces[0].worker.frames if session.surfaces[0].worker else -1
        with pytest.raises(TimeoutError):  # an observation window: idle must stay idle
            await asyncio.wait_for(v.frames.get(), 1.0)
        assert session.surfaces[0].worker is not None and session.surfaces[0].worker.frames == frames_before

        # Malformed, out-of-range and unknown input is dropped; the session goes on.
        assert v.control is not None
        v.control.send("not json")
        v.control.send(b"\x00binary")
        for bad in (
            {"type": "input.button", "button": 9, "down": True, "x": 150, "y": 170},
            {"type": "input.move", "x": 10_000, "y": 5},
            {"type": "input.move", "x": True, "y": 5},
            {"type": "input.key", "code": "KeyA" * 50, "key": "a", "down": True},
            {"type": "no.such.thing"},
            {"no": "type"},
        ):
            v.send(bad)
        v.send({"type": "input.button", "button": 1, "down": True, "x": 150, "y": 170})
        v.send({"type": "input.button", "button": 1, "down": False, "x": 150, "y": 170})
        (event,) = await asyncio.to_thread(watcher.wait_events, {X.ButtonPress})
        assert (event.root_x, event.root_y) == (150, 170)
    finally:
        await v.close()
        watcher.close()


async def test_stop_is_idempotent_and_refuses_restart(shared: tuple[ShareSession, SignalingServer]) -> None:
    session, _ = shared
    await session.stop()
    await session.stop()
    with pytest.raises(Exception, match="once"):
        await session.start()


async def test_keys_and_buttons_held_by_a_viewer_are_released_when_it_leaves(
    shared: tuple[ShareSession, SignalingServer], xvfb_display: str
) -> None:
    session, server = shared
    v = viewer(session, server, session.keys.control)
    mask = X.KeyPressMask | X.KeyReleaseMask | X.ButtonPressMask | X.ButtonReleaseMask
    watcher = XWindow(xvfb_display, 0, 0, 640, 480, mask)
    watcher.focus()
    try:
        await v.connect()
        v.send({"type": "input.key", "code": "KeyQ", "key": "q", "down": True})
        v.send({"type": "input.button", "button": 3, "down": True, "x": 10, "y": 10})
        pressed = await asyncio.to_thread(watcher.wait_events, {X.KeyPress, X.ButtonPress})
        assert {e.type for e in pressed} == {X.KeyPress, X.ButtonPress}
        await v.close()  # the viewer goes away while holding both
        released = await asyncio.to_thread(watcher.wait_events, {X.KeyRelease, X.ButtonRelease})
        assert {e.type for e in released} == {X.KeyRelease, X.ButtonRelease}
    finally:
        watcher.close()


async def test_joins_beyond_the_cap_are_rejected(
    shared: tuple[ShareSession, SignalingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    session, server = shared
    monkeypatch.setattr(session._offers, "capacity", 1)
    first = viewer(session, server, session.keys.control)
    second = viewer(session, server, session.keys.control)
    try:
        assert (await first.connect())["type"] == "offer"
        last = await second.connect()
        assert last["type"] == "reject" and last["reason"] == "the desktop is full"
    finally:
        await first.close()
        await second.close()


CLICK_AT = {"type": "input.button", "button": 1, "down": True, "x": 0, "y": 0}


def click(x: int, y: int, down: bool = True) -> dict[str, Any]:
    return {**CLICK_AT, "x": x, "y": y, "down": down}


async def test_input_from_a_view_only_viewer_never_reaches_x(
    shared: tuple[ShareSession, SignalingServer], xvfb_display: str
) -> None:
    session, server = shared
    watcher = XWindow(xvfb_display, 0, 0, 640, 480, X.ButtonPressMask | X.KeyPressMask | X.PointerMotionMask)
    watcher.focus()
    view = viewer(session, server, session.keys.view)
    control = viewer(session, server, session.keys.control)
    try:
        await view.connect()
        await next_frame(view)
        await control.connect()
        presence = await view.wait_presence(lambda p: p["viewers"] == 2)
        assert presence["role"] == "view" and presence["controllers"] == 1 and presence["mode"] == "shared"
        assert (await control.wait_presence(lambda p: p["viewers"] == 2))["role"] == "control"
        for message in (
            {"type": "input.move", "x": 10, "y": 10},
            click(20, 20),
            click(20, 20, down=False),
            {"type": "input.key", "code": "KeyA", "key": "a", "down": True},
            {"type": "input.wheel", "dx": 0, "dy": 1, "x": 30, "y": 30},
            {"type": "control.request"},
        ):
            view.send(message)
        # The two viewers' messages travel on two connections: wait until the desktop has refused all five of
        # the view-only viewer's input messages, then send the marker, the control viewer's click. Anything of the
        # view-only viewer's that reached X would be there before it.
        await wait_until(lambda: session.refused_input == 5)
        control.send(click(400, 300))
        (press,) = await asyncio.to_thread(watcher.wait_events, {X.ButtonPress})
        assert (press.root_x, press.root_y) == (400, 300)
        before = watcher.events[: watcher.events.index(press)]
        assert all(e.type == X.MotionNotify and (e.root_x, e.root_y) == (400, 300) for e in before), before
        assert not [e for e in watcher.events if e.type == X.KeyPress]
    finally:
        await view.close()
        await control.close()
        watcher.close()


async def test_one_controller_at_a_time(xvfb_display: str) -> None:
    watcher = XWindow(xvfb_display, 0, 0, 640, 480, X.ButtonPressMask | X.ButtonReleaseMask)
    async with sharing(xvfb_display, ControlMode.ONE) as (session, server):
        a, b = viewer(session, server, session.keys.control), viewer(session, server, session.keys.control)
        try:
            await a.connect()
            await b.connect()
            first = await a.wait_presence(lambda p: p["viewers"] == 2)
            assert first["mode"] == "one" and first["holder"] is None and first["requests"] == []
            a.send({"type": "control.request"})
            await b.wait_presence(lambda p: p["holder"] == a.id)
            b.send({"type": "control.request"})
            await a.wait_presence(lambda p: p["requests"] == [b.id])

            b.send(click(50, 50))  # b does not hold control: dropped
            await wait_until(lambda: b.id in session._refused_input)
            a.send(click(60, 70))  # a holds it and presses button 1 …
            (press,) = await asyncio.to_thread(watcher.wait_events, {X.ButtonPress})
            assert (press.root_x, press.root_y) == (60, 70)

            a.send({"type": "control.release"})  # … then hands control to b: a's button goes up
            (release,) = await asyncio.to_thread(watcher.wait_events, {X.ButtonRelease})
            assert release.detail == 1
            await a.wait_presence(lambda p: p["holder"] == b.id and p["requests"] == [])
            watcher.events.clear()
            b.send(click(300, 200))
            (press,) = await asyncio.to_thread(watcher.wait_events, {X.ButtonPress})
            assert (press.root_x, press.root_y) == (300, 200)
            b.send(click(300, 200, down=False))

            view = viewer(session, server, session.keys.view)
            try:
                await view.connect()
                await a.wait_presence(lambda p: p["viewers"] == 3)
                view.send({"type": "control.request"})  # not granted, not queued …
                view.send(click(10, 10))  # … so this is refused
                await wait_until(lambda: session.refused_input >= 2)
                assert session._floor.holder == b.id and session._floor.requests == []
            finally:
                await view.close()

            await b.close()  # the holder leaves: nobody holds control
            await a.wait_presence(lambda p: p["viewers"] == 1 and p["holder"] is None)
        finally:
            await a.close()
            await b.close()
    watcher.close()


async def test_a_viewer_that_left_is_not_kept_alive(shared: tuple[ShareSession, SignalingServer]) -> None:
    """Memory per viewer is bounded: once a viewer has gone, nothing of the desktop's still holds its connection."""
    session, server = shared
    for _ in range(3):
        v = viewer(session, server, session.keys.control)
        await v.connect()
        await next_frame(v)
        await v.close()
    await wait_until(lambda: session.viewers == 0 and not session._offers.peers and not session._offers.running)
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, ViewerPeer)] == []
