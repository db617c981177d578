"""The Python API (impromptu.api) against a real Xvfb, a real xterm, a headless viewer and PyAV."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from Xlib import XK

from impromptu import VirtualDisplay
from impromptu.api import keysyms_for_combo
from impromptu.errors import DisplayError, UsageError

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None or shutil.which("xterm") is None, reason="needs Xvfb and xterm"
)
SIZE = (640, 480)


def wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def vd() -> Iterator[VirtualDisplay]:
    with VirtualDisplay(size=SIZE, fps=15) as display:
        yield display


def test_combos_are_x_keysym_names() -> None:
    assert keysyms_for_combo("Return") == [XK.XK_Return]
    assert keysyms_for_combo("ctrl+a") == [XK.XK_Control_L, XK.XK_a]
    assert keysyms_for_combo("ctrl+shift+Tab") == [XK.XK_Control_L, XK.XK_Shift_L, XK.XK_Tab]
    assert keysyms_for_combo("ctrl++") == [XK.XK_Control_L, XK.XK_plus]
    with pytest.raises(UsageError, match="not an X keysym name"):
        keysyms_for_combo("ctrl+Nonsense")


def test_xterm_typed_into_and_seen(vd: VirtualDisplay, tmp_path: Path) -> None:
    assert re.fullmatch(r":\d+", vd.display)
    assert vd.env["DISPLAY"] == vd.display and os.environ.get("DISPLAY") != vd.display
    proc = vd.launch(
        ["xterm", "-T", "API test terminal", "-geometry", "60x12+20+30", "-bg", "white", "-fg", "black"],
        cwd=tmp_path,
    )
    window = vd.wait_for_window(re.compile(r"^api TEST terminal$", re.IGNORECASE), timeout=15)
    assert window.title == "API test terminal" and window.pid == proc.pid

    vd.click(window.x + window.width // 2, window.y + window.height // 2)
    vd.type_text("echo Hi > typed.txt\n")  # an upper-case letter too: typed without Shift held
    wait_for(lambda: (tmp_path / "typed.txt").exists() and (tmp_path / "typed.txt").read_text() == "Hi\n")
    vd.type_text("echo pressed > pressed.txt")
    vd.press("Return")
    wait_for(lambda: (tmp_path / "pressed.txt").exists() and (tmp_path / "pressed.txt").read_text() == "pressed\n")

    shot = vd.screenshot(tmp_path / "shot.png")
    assert shot.shape == (SIZE[1], SIZE[0], 3) and shot.dtype == np.uint8
    # Inside the terminal: its white background; outside: Xvfb's black root window.
    assert tuple(shot[window.y + window.height - 4, window.x + window.width - 4]) == (255, 255, 255)
    assert tuple(shot[SIZE[1] - 5, SIZE[0] - 5]) == (0, 0, 0)
    # Its text: dark pixels in the terminal.
    inside = shot[window.y : window.y + window.height, window.x : window.x + window.width]
    assert (inside.sum(axis=2) < 200).sum() > 50
    written = cv2.imread(str(tmp_path / "shot.png"))
    assert written is not None and np.array_equal(written[:, :, ::-1], shot)


def test_close_stops_apps_and_display(tmp_path: Path) -> None:
    vd = VirtualDisplay(size=SIZE).start()
    # A shell that ignores SIGTERM and leaves a child in its process group: both must go.
    proc = vd.launch("sh -c 'trap \"\" TERM; sleep 300 & wait'")
    display = vd.display
    vd.close()
    vd.close()  # idempotent
    assert proc.poll() is not None
    assert not Path(f"/tmp/.X11-unix/X{display[1:]}").exists()
    with pytest.raises(DisplayError, match="closed"):
        vd.start()
    with pytest.raises(DisplayError, match="closed"):
        vd.screenshot()


def encode_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("impromptu-encode-")]


def dark_pixels(rgb: np.ndarray) -> int:
    """Text pixels of a black-on-white terminal (the encoding blurs their edges: only clearly dark ones count)."""
    return int((rgb.astype(np.int32).sum(axis=2) < 300).sum())


def test_record_without_a_share(vd: VirtualDisplay, tmp_path: Path) -> None:
    vd.launch(["xterm", "-T", "recorded", "-geometry", "40x10+0+0", "-bg", "white", "-fg", "black"], cwd=tmp_path)
    window = vd.wait_for_window("recorded", timeout=15)
    vd.click(window.x + window.width // 2, window.y + window.height // 2)  # the pointer's window has the keys
    area = (slice(window.y, window.y + window.height), slice(window.x, window.x + window.width))
    begun = time.monotonic()
    with vd.record(tmp_path / "api") as recording:
        assert recording.wait_started()
        started = time.monotonic()
        vd.type_text("echo recorded by impromptu > done.txt\n")
        done = tmp_path / "done.txt"
        wait_for(lambda: done.exists() and done.read_text() == "recorded by impromptu\n")
        typed = vd.screenshot()
        stopping = time.monotonic()
    stopped = time.monotonic()
    paths = recording.stop()
    assert paths == [tmp_path / "api.mp4"] and recording.path == paths[0]
    with av.open(str(paths[0])) as container:
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert len(frames) >= 2 and frames[0][1].shape == (SIZE[1], SIZE[0], 3)
    # From the first frame written (before wait_started returned) to a frame captured after stop() began: all of
    # [started, stopping], less a frame interval at 15 fps for where the capture ticks fall; and within the time
    # record() and stop() took.
    duration = frames[-1][0] - frames[0][0]
    assert stopping - started - 1 / 15 - 0.02 <= duration <= stopped - begun, (duration, stopping - started)
    # The typed line and its command's effect are in the last frame, not in the first (only the prompt then).
    first, last = dark_pixels(frames[0][1][area]), dark_pixels(frames[-1][1][area])
    assert last >= 0.8 * dark_pixels(typed[area]) and last > first + 100, (first, last, dark_pixels(typed[area]))


def test_share_streams_to_a_viewer_through_the_recording_session(vd: VirtualDisplay, tmp_path: Path) -> None:
    from impromptu.probe import run_probe
    from impromptu.rtc import IcePolicy

    with vd.record(tmp_path / "both") as recording:
        assert recording.wait_started()
        assert encode_threads() == ["impromptu-encode-0"]
        # The session's ICE addresses are set at its start: not changed under a recording.
        with pytest.raises(UsageError, match="ICE addresses"):
            vd.share(ice_addresses=("127.0.0.1",))
        share = vd.share()
        assert vd.share() is share
        # One capture and one encode for the recording and the viewers: never a second session.
        assert encode_threads() == ["impromptu-encode-0"]
        assert share.operator_url is not None
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/#c=[\w-]+", share.operator_url)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/#v=[\w-]+", share.view_url)
        report = asyncio.run(run_probe(share.view_url, 1.0, IcePolicy(addresses=("127.0.0.1",))))
        assert report.role == "view" and (report.width, report.height) == SIZE and report.keyframes >= 1
    assert recording.stop() == [tmp_path / "both.mp4"]
    share.stop()
    assert encode_threads() == []
    # Nothing records now: a share with other addresses starts a session of its own.
    again = vd.share(ice_addresses=("127.0.0.1",))
    assert again is not share and encode_threads() == ["impromptu-encode-0"]
    again.stop()
