"""Shared windows in real headless Chromium (protocol.md §8): `impromptu share --window-title A --window-title B`
shows one tab per window; each tab shows its own window, and clicks and keys in it reach that window only; a
keyboard shortcut switches windows without any window getting it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from Xlib import XK, X
from Xlib.display import Display

from impromptu.display import Xvfb
from tests.browser import canvas_pixels, screen_to_page
from tests.harness import CHROMIUM, desktop_args, run_desktop, wait_for
from tests.xclient import Painter

pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)"),
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb (apt-get install xvfb)"),
]

RED = 0xC02020
BLUE = 0x2040C0
INPUT = X.ButtonPressMask | X.KeyPressMask


@pytest.fixture
def display() -> Iterator[str]:
    with Xvfb((800, 600)) as xvfb:
        yield xvfb.name


@pytest.fixture
def windows(display: str) -> Iterator[tuple[Painter, Painter]]:
    """Two titled windows that record the input they get: "Alpha" (red, 200x120) and "Beta" (blue, 240x160)."""
    alpha = Painter(display, 20, 20, 200, 120, (RED,), input_mask=INPUT, title="Alpha")
    beta = Painter(display, 300, 200, 240, 160, (BLUE,), input_mask=INPUT, title="Beta")
    try:
        alpha.wait_painted(0)
        beta.wait_painted(0)
        yield alpha, beta
    finally:
        beta.close()
        alpha.close()


def open_page(browser: Any, url: str, surfaces: int) -> Any:
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function(
        f"""() => window.impromptu && window.impromptu.surfaces.length === {surfaces}
            && window.impromptu.surfaces.every((s) => s.framesDecoded > 0)""",
        timeout=20_000,
    )
    page.errors = errors
    return page


def shows(page: Any, rgb: int) -> bool:
    """Whether the canvas shows that colour all over (the window is one colour; the codec blurs a little)."""
    want = np.array([(rgb >> 16) & 0xFF, (rgb >> 8) & 0xFF, rgb & 0xFF])
    return bool(np.abs(canvas_pixels(page, 8, 8).reshape(-1, 3).astype(int) - want).max() < 40)


def tabs(page: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate(
        """() => [...document.querySelectorAll('#tabs [role=tab]')].map((t) => ({
            label: t.querySelector('.label').textContent, selected: t.getAttribute('aria-selected') === 'true',
            state: t.dataset.state, tabIndex: t.tabIndex }))"""
    )
    return found


def events(window: Painter, kind: int) -> list[Any]:
    return [e for e in window.sync() if e.type == kind]


def test_two_windows_two_tabs_each_shows_and_operates_its_own(
    browser: Any, display: str, windows: tuple[Painter, Painter]
) -> None:
    alpha, beta = windows
    args = ("--window-title", "^Alpha$", "--window-title", "^Beta$")
    with run_desktop("share", "--display", display, *args, *desktop_args()) as desktop:
        page = open_page(browser, desktop.url, 2)
        surfaces = page.evaluate("window.impromptu.surfaces")
        assert [(s["surface"], s["title"], s["width"], s["height"], s["state"]) for s in surfaces] == [
            (1, "Alpha", 200, 120, "live"),
            (2, "Beta", 240, 160, "live"),
        ]
        assert page.locator("#tabs").is_visible()
        assert tabs(page) == [
            {"label": "Alpha", "selected": True, "state": "live", "tabIndex": 0},
            {"label": "Beta", "selected": False, "state": "live", "tabIndex": -1},
        ]
        wait_for(lambda: shows(page, RED), 10, "the first tab to show Alpha (red)")

        # A click on a tab shows its window at once (every surface keeps decoding), and input goes there.
        page.click("#tab-2")
        assert shows(page, BLUE), "Beta shows as soon as its tab is picked"
        assert page.evaluate("window.impromptu.lastConfig.surface") == 2
        assert page.evaluate("document.activeElement.id") == "screen", "keys go back to the desktop"
        page.mouse.click(*screen_to_page(page, 240, 160)(50, 40))
        press = beta.wait_event(lambda e: e.type == X.ButtonPress)
        assert abs(press.event_x - 50) <= 2 and abs(press.event_y - 40) <= 2, (press.event_x, press.event_y)
        page.keyboard.press("b")
        beta.wait_event(lambda e: e.type == X.KeyPress)
        assert events(alpha, X.ButtonPress) == [] and events(alpha, X.KeyPress) == []

        # The tabs work from the keyboard: arrows move between them, Enter goes back to the picture.
        page.focus("#tab-2")
        page.keyboard.press("ArrowLeft")
        assert page.evaluate("[window.impromptu.selectedSurface, document.activeElement.id]") == [1, "tab-1"]
        assert shows(page, RED)
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "screen"
        clicks_on_beta = len(events(beta, X.ButtonPress))
        page.mouse.click(*screen_to_page(page, 200, 120)(199, 119))
        press = alpha.wait_event(lambda e: e.type == X.ButtonPress)
        assert abs(press.event_x - 199) <= 2 and abs(press.event_y - 119) <= 2, (press.event_x, press.event_y)
        page.keyboard.press("a")
        alpha.wait_event(lambda e: e.type == X.KeyPress)
        assert len(events(beta, X.ButtonPress)) == clicks_on_beta

        # Beta unmapped: paused, its last picture under the reason. Alpha destroyed: ended, its tab greyed.
        unmap(display, beta.id)
        page.wait_for_function("() => window.impromptu.surfaces[1].state === 'paused'", timeout=10_000)
        assert page.evaluate("window.impromptu.selectSurface(2)") is True
        assert page.locator("#overlay").inner_text().startswith("Paused")
        assert shows(page, BLUE), "the canvas keeps its last picture (the overlay is an element over it)"
        assert tabs(page)[1]["state"] == "paused"
        alpha.window.destroy()
        alpha.d.flush()
        page.wait_for_function("() => window.impromptu.surfaces[0].state === 'ended'", timeout=10_000)
        page.click("#tab-1")
        assert page.locator("#overlay").inner_text() == "This window was closed"
        assert tabs(page)[0]["state"] == "ended"
        assert page.evaluate("window.impromptu.selectSurface(9)") is False
        assert not page.errors
        page.close()


def keycodes(display: str, *names: str) -> set[int]:
    """The keycodes that carry these keysyms (``Next`` is PageDown)."""
    d = Display(display)
    try:
        return {code for name in names for code, _ in d.keysym_to_keycodes(XK.string_to_keysym(name))}
    finally:
        d.close()


def held_keys(display: str) -> list[int]:
    """The keycodes the X server has down now (XQueryKeymap)."""
    d = Display(display)
    try:
        keymap = d.query_keymap()
    finally:
        d.close()
    return [byte * 8 + bit for byte, bits in enumerate(keymap) for bit in range(8) if bits >> bit & 1]


def test_a_shortcut_switches_windows_and_no_window_gets_it(
    browser: Any, display: str, windows: tuple[Painter, Painter]
) -> None:
    """Ctrl+Alt+PageUp / PageDown shows the previous / next window even while the picture has the keyboard (where
    every other key goes to the desktop); it reaches no window, and leaves no key held there."""
    alpha, beta = windows
    args = ("--window-title", "^Alpha$", "--window-title", "^Beta$")
    with run_desktop("share", "--display", display, *args, *desktop_args()) as desktop:
        page = open_page(browser, desktop.url, 2)
        wait_for(lambda: shows(page, RED), 10, "the first tab to show Alpha (red)")
        assert page.locator("#tablist").get_attribute("aria-keyshortcuts") == "Control+Alt+PageUp Control+Alt+PageDown"
        assert "Ctrl+Alt+PageUp / PageDown" in page.locator("#tabs-hint").inner_text()
        assert page.locator("#tabs-hint").is_visible()

        page.focus("#screen")
        page.keyboard.press("Control+Alt+PageDown")
        assert page.evaluate("[window.impromptu.selectedSurface, document.activeElement.id]") == [2, "screen"]
        assert shows(page, BLUE)
        assert tabs(page)[1]["selected"] and tabs(page)[1]["tabIndex"] == 0
        page.keyboard.press("Control+Alt+PageDown")
        assert page.evaluate("window.impromptu.selectedSurface") == 1, "past the last window: the first"
        page.keyboard.press("Control+Alt+PageUp")
        assert page.evaluate("window.impromptu.selectedSurface") == 2
        # The keys typed next go to the window now shown, with no modifier left over from the shortcut.
        page.keyboard.press("b")
        press = beta.wait_event(lambda e: e.type == X.KeyPress)
        assert press.state & (X.ControlMask | X.Mod1Mask) == 0, press.state
        paging = keycodes(display, "Next", "Prior", "KP_Next", "KP_Prior")
        for window in (alpha, beta):
            assert [e.detail for e in events(window, X.KeyPress) if e.detail in paging] == []
        wait_for(lambda: held_keys(display) == [], 5, "no key left held on the desktop")

        # On the tab strip the focus follows the selection.
        page.focus("#tab-2")
        page.keyboard.press("Control+Alt+PageDown")
        assert page.evaluate("[window.impromptu.selectedSurface, document.activeElement.id]") == [1, "tab-1"]
        assert shows(page, RED)
        assert not page.errors
        page.close()


def rename(display: str, window_id: int, title: str) -> None:
    """Set a window's ``WM_NAME``, as its application would (from a connection of the test's own)."""
    d = Display(display)
    try:
        d.create_resource_object("window", window_id).set_wm_name(title)
        d.sync()
    finally:
        d.close()


def check_renamed_tab(page: Any, hook: str, display: str, window: Painter, title: str) -> None:
    """Rename ``window`` (surface 1): the tab follows, and its decoder was not configured afresh for it."""
    starts = page.evaluate(f"window.{hook}.surfaces[0].starts")
    rename(display, window.id, title)
    page.wait_for_function(f"() => window.{hook}.surfaces[0].title === {title!r}", timeout=10_000)
    assert tabs(page)[0]["label"] == title
    assert page.evaluate(f"window.{hook}.surfaces[0].starts") == starts, "a rename does not restart the decoder"


def test_a_renamed_window_renames_its_tab(browser: Any, display: str, windows: tuple[Painter, Painter]) -> None:
    alpha, _ = windows
    args = ("--window-title", "^Alpha", "--window-title", "^Beta$")
    with run_desktop("share", "--display", display, *args, *desktop_args()) as desktop:
        page = open_page(browser, desktop.url, 2)
        check_renamed_tab(page, "impromptu", display, alpha, "Alpha (edited)")
        assert page.locator("#screen").get_attribute("aria-label") == "shared window: Alpha (edited)"
        wait_for(lambda: shows(page, RED), 10, "Alpha still shown")
        assert not page.errors
        page.close()


def unmap(display: str, window_id: int) -> None:
    d = Display(display)
    try:
        d.create_resource_object("window", window_id).unmap()
        d.sync()
    finally:
        d.close()


def test_one_window_no_tabs(browser: Any, display: str, windows: tuple[Painter, Painter]) -> None:
    """One shared window: the page looks as it does for a whole display, without a tab strip."""
    with run_desktop("share", "--display", display, "--window-title", "^Beta$", *desktop_args()) as desktop:
        page = open_page(browser, desktop.url, 1)
        assert page.evaluate("window.impromptu.lastConfig.surface") == 1
        assert not page.locator("#tabs").is_visible()
        wait_for(lambda: shows(page, BLUE), 10, "the page to show Beta (blue)")
        assert page.locator("#screen").get_attribute("aria-label") == "shared window: Beta"
        assert not page.errors
        page.close()
