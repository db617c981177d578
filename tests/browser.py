"""Helpers for tests in real headless Chromium: open the operator page, compare what it shows with X, and map
screen coordinates to the page. (The ``playwright`` and ``browser`` fixtures are in conftest.py.)"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mss
import numpy as np

from tests.harness import CHROMIUM, CHROMIUM_ARGS, wait_for


def open_operator(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function("() => window.impromptu && window.impromptu.framesDecoded > 0", timeout=20_000)
    page.errors = errors
    return page


def canvas_pixels(page: Any, width: int, height: int) -> np.ndarray:
    """The page's canvas, downscaled in the page to ``width``x``height``, as an RGB array."""
    data = page.evaluate(
        """([w, h]) => {
            const src = document.getElementById('screen');
            const c = document.createElement('canvas'); c.width = w; c.height = h;
            const ctx = c.getContext('2d'); ctx.drawImage(src, 0, 0, w, h);
            return Array.from(ctx.getImageData(0, 0, w, h).data);
        }""",
        [width, height],
    )
    return np.array(data, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]


def x_pixels(display: str, width: int, height: int) -> np.ndarray:
    """A screenshot of the X display, downscaled by block averaging to ``width``x``height``, as RGB."""
    with mss.MSS(display=display) as grabber:
        shot = grabber.grab(grabber.monitors[1])
    bgra = np.frombuffer(shot.raw, np.uint8).reshape(shot.height, shot.width, 4)
    fy, fx = shot.height // height, shot.width // width
    small = bgra[: height * fy, : width * fx, :3].reshape(height, fy, width, fx, 3).mean(axis=(1, 3))
    return small[:, :, ::-1].astype(np.uint8)


def screen_to_page(page: Any, width: int, height: int) -> Any:
    """Maps X pixel coordinates to page coordinates on the canvas, which shows the screen letterboxed."""
    box = page.locator("#screen").bounding_box()
    scale = min(box["width"] / width, box["height"] / height)
    left = box["x"] + (box["width"] - width * scale) / 2
    top = box["y"] + (box["height"] - height * scale) / 2
    return lambda x, y: (left + (x + 0.5) * scale, top + (y + 0.5) * scale)


@contextmanager
def chromium_of_its_own(playwright: Any, url: str, profile: Path) -> Iterator[tuple[subprocess.Popen[bytes], Any]]:
    """A Chromium in a process group of its own (so a test can kill it outright), showing ``url``, and its page
    driven over the DevTools protocol."""
    command = [CHROMIUM, *CHROMIUM_ARGS, "--headless=new", f"--user-data-dir={profile}"]
    command += ["--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", url]
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        port_file = profile / "DevToolsActivePort"
        port = wait_for(lambda: port_file.exists() and port_file.read_text().split("\n")[0], 20, "DevTools port")
        browser = playwright.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
        page = wait_for(lambda: [p for c in browser.contexts for p in c.pages if p.url == url], 20, "the page")[0]
        yield proc, page
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
