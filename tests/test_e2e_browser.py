"""End to end in real headless Chromium: `impromptu vdisplay run -- xterm`, watched and operated from the page."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from Xlib import X

from tests.browser import canvas_pixels, open_operator, screen_to_page, x_pixels
from tests.harness import CHROMIUM, Desktop, desktop_args, run_desktop, wait_for
from tests.xclient import XWindow, set_mode

pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)")


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Desktop]:
    with run_desktop(
        "vdisplay", "run", *desktop_args("--size", "1280x800"), "--", "xterm", "-geometry", "80x24+0+0"
    ) as d:
        yield d


def test_page_shows_the_screen_and_operates_the_xterm(browser: Any, desktop: Desktop, tmp_path: Path) -> None:
    page = open_operator(browser, desktop.url)
    state = page.evaluate("window.impromptu.lastConfig")
    assert (state["width"], state["height"]) == (1280, 800)

    # What the page shows is what X shows (downscaled, so codec noise averages out).
    def matches() -> bool:
        diff = np.abs(canvas_pixels(page, 160, 100).astype(int) - x_pixels(desktop.display, 160, 100).astype(int))
        return float(diff.mean()) < 6.0

    wait_for(matches, 10, "the canvas to match the X screen")

    # A click on the page lands at the right X coordinates.
    target = XWindow(desktop.display, 900, 500, 200, 150, X.ButtonPressMask)
    try:
        to_page = screen_to_page(page, 1280, 800)
        page.mouse.click(*to_page(960, 555))
        (press,) = target.wait_events({X.ButtonPress})
        assert abs(press.root_x - 960) <= 2 and abs(press.root_y - 555) <= 2, (press.root_x, press.root_y)
        assert press.detail == 1
    finally:
        target.close()

    # Text typed in the page runs a shell command in the xterm.
    marker = tmp_path / "typed-through-the-page"
    page.mouse.click(*to_page(100, 100))  # the pointer over the xterm gives it focus (no window manager)
    page.keyboard.type(f"touch {marker}")
    page.keyboard.press("Enter")
    wait_for(marker.exists, 10, "the command typed in the page to run in the xterm")
    assert not page.errors


def test_ctrl_c_leaves_no_process_behind(browser: Any) -> None:
    with run_desktop("vdisplay", "run", *desktop_args(), "--", "xterm") as desktop:
        page = open_operator(browser, desktop.url)
        children = subprocess.run(["pgrep", "-P", str(desktop.proc.pid)], capture_output=True, text=True).stdout.split()
        display_number = desktop.display.lstrip(":")
        assert Path(f"/tmp/.X11-unix/X{display_number}").exists()
        assert len(children) >= 2, "Xvfb and xterm run as children"
        assert desktop.interrupt(timeout=5) == 130
        page.close()
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"process {pid} survived"
    assert not Path(f"/tmp/.X11-unix/X{display_number}").exists()
    assert not Path(f"/tmp/.X{display_number}-lock").exists()


def _is_zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_page_reconnects_by_itself_when_its_connection_dies(browser: Any) -> None:
    with run_desktop("vdisplay", "run", *desktop_args("--size", "640x480"), "--", "xterm") as desktop:
        page = browser.new_page()
        # Keep a handle on every peer connection the page makes, so the test can kill one.
        page.add_init_script(
            """(() => {
                const Native = window.RTCPeerConnection;
                window.__pcs = [];
                window.RTCPeerConnection = function (...args) {
                    const pc = new Native(...args);
                    window.__pcs.push(pc);
                    return pc;
                };
                window.RTCPeerConnection.prototype = Native.prototype;
            })();"""
        )
        page.goto(desktop.url)
        page.wait_for_function("() => window.impromptu && window.impromptu.framesDecoded > 0", timeout=20_000)
        page.evaluate("() => window.__pcs[0].close()")
        page.wait_for_function(
            "() => window.__pcs.length >= 2 && window.__pcs.at(-1).connectionState === 'connected'"
            " && window.impromptu.state === 'connected'",
            timeout=15_000,
        )
        # The new connection streams: a change on the screen reaches the page through it.
        decoded = page.evaluate("() => window.impromptu.framesDecoded")
        subprocess.run(["xsetroot", "-solid", "#208040"], env={"DISPLAY": desktop.display}, check=True)
        page.wait_for_function(f"() => window.impromptu.framesDecoded > {decoded}", timeout=10_000)
        page.close()


def test_share_an_existing_display(browser: Any, xvfb_display: str) -> None:
    with run_desktop("share", "--display", xvfb_display, *desktop_args()) as desktop:
        assert desktop.display == xvfb_display
        page = open_operator(browser, desktop.url)
        assert page.evaluate("() => window.impromptu.lastConfig.width") == 640
        page.close()
        assert desktop.interrupt() == 0, "Ctrl-C is how a share ends: a clean exit"


def test_page_explains_a_link_without_its_key(browser: Any) -> None:
    with run_desktop("vdisplay", "run", *desktop_args(), "--", "sleep", "600") as desktop:
        page = browser.new_page()
        page.goto(desktop.url.partition("#")[0])
        page.wait_for_function("() => window.impromptu && window.impromptu.state === 'failed'", timeout=10_000)
        assert "no key after #" in page.locator("#notice").inner_text()
        page.close()


def test_page_says_when_the_browser_lacks_webcodecs(browser: Any) -> None:
    with run_desktop("vdisplay", "run", *desktop_args(), "--", "sleep", "600") as desktop:
        page = browser.new_page()
        page.add_init_script("delete window.VideoDecoder;")
        page.goto(desktop.url)
        page.wait_for_function("() => window.impromptu && window.impromptu.state === 'unsupported'", timeout=10_000)
        assert "WebCodecs" in page.locator("#notice").inner_text()
        page.close()


def test_https_when_bound_beyond_loopback(browser: Any, tmp_path: Path) -> None:
    """Off loopback the page is served over HTTPS (WebCodecs needs a secure context) and signaling over wss."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))
    args = ["--bind", "0.0.0.0:0", "--ice-address", "127.0.0.1", "--", "xterm"]
    with run_desktop("vdisplay", "run", *args, env=env) as desktop:
        assert desktop.url.startswith("https://")
        # The printed link names this machine's LAN address; the test stays on loopback.
        port = desktop.url.split("/")[2].rsplit(":", 1)[1]
        url = f"https://127.0.0.1:{port}/#{desktop.url.partition('#')[2]}"
        context = browser.new_context(ignore_https_errors=True)  # the self-signed certificate
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("() => window.impromptu && window.impromptu.framesDecoded > 0", timeout=20_000)
        assert page.evaluate("() => window.isSecureContext && location.protocol") == "https:"
        context.close()


def test_page_follows_a_resized_screen(browser: Any) -> None:
    with run_desktop("vdisplay", "run", *desktop_args("--size", "1280x800"), "--", "xterm") as desktop:
        page = open_operator(browser, desktop.url)
        set_mode(desktop.display, 1024, 768)
        page.wait_for_function(
            "() => window.impromptu.lastConfig.width === 1024 && window.impromptu.lastConfig.height === 768",
            timeout=10_000,
        )
        decoded = page.evaluate("() => window.impromptu.framesDecoded")
        subprocess.run(["xsetroot", "-solid", "#405060"], env={"DISPLAY": desktop.display}, check=True)
        page.wait_for_function(f"() => window.impromptu.framesDecoded > {decoded}", timeout=10_000)
        assert page.evaluate("() => [window.impromptu.canvas.width, window.impromptu.canvas.height]") == [1024, 768]
        assert not page.errors
        page.close()
