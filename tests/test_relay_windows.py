"""Shared windows through relays, in real headless Chromium (protocol.md §7, §8): a relay forwards every surface's
frames, whichever window they are of; the relay page shows every window as the operator page does (one tab each,
paused and closed windows said so); and a page behind a relay gets every window, shows each, and drives it.

Topology (the desktop started with ``--max-direct 1``, sharing windows Alpha and Beta):

    desktop ── relay (the relay page, or `impromptu relay`; view-only link) ── operator page (control link)
"""

from __future__ import annotations

from typing import Any

import pytest
from Xlib import X

from tests import test_windows_browser
from tests.browser import screen_to_page
from tests.harness import desktop_args, run_desktop, wait_for
from tests.test_relay import peer_id, python_relay, relay_page_url, relay_peers, wait_relay_ready
from tests.test_windows_browser import (
    BLUE,
    RED,
    check_renamed_tab,
    events,
    keycodes,
    open_page,
    shows,
    tabs,
    unmap,
)
from tests.xclient import Painter

pytest.importorskip("playwright.sync_api")

pytestmark = test_windows_browser.pytestmark
# The Xvfb display and its two windows, Alpha (red) and Beta (blue), as in the direct tests.
display = test_windows_browser.display
windows = test_windows_browser.windows

SHARE = ("--window-title", "^Alpha", "--window-title", "^Beta$")
EVERY_WINDOW = [(1, "Alpha", 200, 120), (2, "Beta", 240, 160)]


def surfaces(page: Any, hook: str) -> list[tuple[int, str, int, int]]:
    found = page.evaluate(f"window.{hook}.surfaces")
    return [(s["surface"], s["title"], s["width"], s["height"]) for s in found]


def check_page_behind_relay(browser: Any, desktop_url: str, alpha: Painter, beta: Painter) -> Any:
    """An operator page behind the relay: every window, each tab showing its own, the shortcut switching them,
    and a click reaching the window shown. Returns the page."""
    page = open_page(browser, desktop_url, 2)
    assert page.evaluate("window.impromptu.viaRelay") is True
    assert surfaces(page, "impromptu") == EVERY_WINDOW
    assert [t["label"] for t in tabs(page)] == ["Alpha", "Beta"]
    wait_for(lambda: shows(page, RED), 10, "the page behind the relay to show Alpha (red)")
    page.click("#tab-2")
    assert shows(page, BLUE), "Beta, through the relay, as soon as its tab is picked"
    page.keyboard.press("Control+Alt+PageUp")  # the picture has the keyboard after a click on a tab
    assert page.evaluate("[window.impromptu.selectedSurface, document.activeElement.id]") == [1, "screen"]
    assert shows(page, RED)
    # Input through the relay names the surface too: the click lands in Alpha, not in Beta.
    page.mouse.click(*screen_to_page(page, 200, 120)(30, 20))
    press = alpha.wait_event(lambda e: e.type == X.ButtonPress)
    assert abs(press.event_x - 30) <= 2 and abs(press.event_y - 20) <= 2, (press.event_x, press.event_y)
    assert events(beta, X.ButtonPress) == []
    return page


def test_a_relay_page_and_the_page_behind_it_show_every_window(
    browser: Any, display: str, windows: tuple[Painter, Painter]
) -> None:
    alpha, beta = windows
    with run_desktop("share", "--display", display, *SHARE, *desktop_args("--max-direct", "1")) as desktop:
        relay = browser.new_page(viewport={"width": 1400, "height": 800})
        errors: list[str] = []
        relay.on("pageerror", lambda exc: errors.append(str(exc)))
        relay.goto(relay_page_url(desktop.view_url, 2))
        wait_relay_ready(relay)
        relay.wait_for_function(
            """() => window.impromptuRelay.surfaces.length === 2
                && window.impromptuRelay.surfaces.every((s) => s.framesDecoded > 0)""",
            timeout=20_000,
        )

        # The relay page: a tab per window, as on the operator page, each showing its own window.
        assert surfaces(relay, "impromptuRelay") == EVERY_WINDOW
        assert relay.locator("#tabs").is_visible()
        assert tabs(relay) == [
            {"label": "Alpha", "selected": True, "state": "live", "tabIndex": 0},
            {"label": "Beta", "selected": False, "state": "live", "tabIndex": -1},
        ]
        wait_for(lambda: shows(relay, RED), 10, "the relay page to show Alpha (red)")
        relay.click("#tab-2")
        assert relay.evaluate("window.impromptuRelay.selectedSurface") == 2
        assert shows(relay, BLUE)
        relay.keyboard.press("ArrowLeft")  # the strip has the focus after the click
        assert relay.evaluate("[window.impromptuRelay.selectedSurface, document.activeElement.id]") == [1, "tab-1"]
        assert shows(relay, RED)
        relay.keyboard.press("Control+Alt+PageDown")
        assert relay.evaluate("[window.impromptuRelay.selectedSurface, document.activeElement.id]") == [2, "tab-2"]
        relay.locator("body").focus()
        relay.keyboard.press("Control+Alt+PageUp")
        assert relay.evaluate("window.impromptuRelay.selectedSurface") == 1, "the shortcut from anywhere on the page"

        # The page behind it gets both windows' frames, forwarded by the relay.
        page = check_page_behind_relay(browser, desktop.url, alpha, beta)
        wait_for(lambda: peer_id(page) in relay_peers(relay), 10, "the relay to list the page")
        paging = keycodes(display, "Next", "Prior", "KP_Next", "KP_Prior")
        for window in (alpha, beta):
            assert [e.detail for e in events(window, X.KeyPress) if e.detail in paging] == [], "no window got it"

        # A window renamed: both pages relabel its tab, and neither restarts its decoder for that.
        check_renamed_tab(relay, "impromptuRelay", display, alpha, "Alpha (edited)")
        page.wait_for_function("() => window.impromptu.surfaces[0].title === 'Alpha (edited)'", timeout=10_000)
        assert [t["label"] for t in tabs(page)] == ["Alpha (edited)", "Beta"]
        assert page.evaluate("window.impromptu.surfaces[0].starts") == 1

        # A window unmapped: paused on both pages, its last picture under the reason.
        unmap(display, beta.id)
        for p, hook in ((relay, "impromptuRelay"), (page, "impromptu")):
            p.wait_for_function(f"() => window.{hook}.surfaces[1].state === 'paused'", timeout=10_000)
            assert p.evaluate(f"window.{hook}.selectSurface(2)") is True
            assert p.locator("#overlay").inner_text().startswith("Paused")
            assert tabs(p)[1]["state"] == "paused"
            assert shows(p, BLUE), "the last picture stays"
        # One more viewer of the relay, joining now, is told of the pause by the relay.
        late = browser.new_page(viewport={"width": 1000, "height": 700})
        late.goto(desktop.url)
        late.wait_for_function(
            "() => window.impromptu && window.impromptu.surfaces.length === 2"
            " && window.impromptu.surfaces[1].state === 'paused' && window.impromptu.viaRelay",
            timeout=20_000,
        )
        assert not errors
        assert not page.errors
        for p in (late, page, relay):
            p.close()


def test_the_python_relay_forwards_every_window(browser: Any, display: str, windows: tuple[Painter, Painter]) -> None:
    alpha, beta = windows
    with (
        run_desktop("share", "--display", display, *SHARE, *desktop_args("--max-direct", "1")) as desktop,
        python_relay(desktop.view_url, 2),
    ):
        page = check_page_behind_relay(browser, desktop.url, alpha, beta)
        assert not page.errors
        page.close()
