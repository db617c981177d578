"""A shared display that changes size (RandR): capture follows, viewers get a new config and a keyframe of the
new size, and input maps to the new bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import av
import pytest
from Xlib.display import Display

from impromptu.display import Xvfb
from impromptu.session import ShareSession
from impromptu.signaling import SignalingServer
from tests.pyviewer import sharing, viewer
from tests.xclient import set_mode


@pytest.fixture
def display() -> Iterator[str]:
    with Xvfb((1280, 800)) as xvfb:
        yield xvfb.name


@pytest.fixture
async def shared(display: str) -> AsyncIterator[tuple[ShareSession, SignalingServer]]:
    async with sharing(display) as pair:
        yield pair


async def test_a_resized_screen_is_followed(shared: tuple[ShareSession, SignalingServer], display: str) -> None:
    session, server = shared
    v = viewer(session, server, session.keys.control)
    try:
        await v.connect()
        first = await asyncio.wait_for(v.frames.get(), 10)
        assert first.keyframe and (v.configs[0]["width"], v.configs[0]["height"]) == (1280, 800)

        await asyncio.to_thread(set_mode, display, 1024, 768)
        decoder = av.CodecContext.create("h264", "r")
        for _ in range(30):
            chunk = await asyncio.wait_for(v.frames.get(), 10)
            if chunk.keyframe:
                (picture,) = decoder.decode(av.Packet(chunk.data))
                if (picture.width, picture.height) == (1024, 768):
                    break
        else:
            pytest.fail("no keyframe of the new size arrived")
        assert (v.configs[-1]["width"], v.configs[-1]["height"]) == (1024, 768)
        assert session.describe().startswith("1024x768")

        # Input maps to the new bounds: inside goes through, beyond the new edge is dropped.
        pointer = Display(display)
        try:
            v.send({"type": "input.move", "x": 1100, "y": 10})
            v.send({"type": "input.move", "x": 1000, "y": 700})
            for _ in range(100):
                where = pointer.screen().root.query_pointer()
                if (where.root_x, where.root_y) == (1000, 700):
                    break
                await asyncio.sleep(0.05)  # polling an external effect, bounded
            else:
                pytest.fail("the pointer never reached (1000, 700)")
            while not v.frames.empty():
                v.frames.get_nowait()
            v.send({"type": "input.move", "x": 1100, "y": 10})
            # A round trip on the same ordered channel: once the keyframe asked for after the move arrives, the
            # desktop has handled the move.
            v.send({"type": "keyframe.request", "surface": 0})
            while not (await asyncio.wait_for(v.frames.get(), 10)).keyframe:
                pass
            where = pointer.screen().root.query_pointer()
            assert (where.root_x, where.root_y) == (1000, 700), "a move beyond the new width was dropped"
        finally:
            pointer.close()
    finally:
        await v.close()


def test_a_screen_shrunk_during_a_grab_is_a_resize_not_a_failure(display: str) -> None:
    """RandR can shrink the screen between the capture's last look at its size and its next grab, which then
    fails (BadMatch): the source takes the new size and says so, and the next grab fits."""
    from impromptu.capture import SurfaceResized
    from impromptu.capture.x11 import X11ScreenSource

    source = X11ScreenSource(display)
    try:
        source.changed()
        assert source.grab().width == 1280
        set_mode(display, 1024, 768)  # and no changed(): the ConfigureNotify is still unread
        with pytest.raises(SurfaceResized):
            source.grab()
        assert source.size == (1024, 768)
        frame = source.grab()
        assert (frame.width, frame.height, len(frame.data)) == (1024, 768, 1024 * 768 * 4)
    finally:
        source.close()
