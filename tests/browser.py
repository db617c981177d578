"""Helpers for tests in real headless Chromium: open the operator page, compare what it shows with X, and map
screen coordinates to the page. (The ``playwright`` and ``browser`` fixtures are in conftest.py.)"""

from __future__ import annotations

from typing import Any

import mss
import numpy as np


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
