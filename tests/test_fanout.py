"""Many viewers of one desktop, end to end: real Chromium pages and `impromptu probe` processes on one
`impromptu vdisplay run`, which encodes once for all of them."""

from __future__ import annotations

import os
import signal
import statistics
from pathlib import Path
from typing import Any

import pytest
from Xlib import X

from tests.browser import canvas_pixels, chromium_of_its_own, open_operator, screen_to_page, x_pixels
from tests.harness import (
    CHROMIUM,
    desktop_args,
    moving_app,
    probe_report,
    probing,
    run_desktop,
    wait_for,
)
from tests.xclient import XWindow

pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)")


def shows_the_screen(page: Any, display: str) -> bool:
    canvas = canvas_pixels(page, 64, 48).astype(int)
    screen = x_pixels(display, 64, 48).astype(int)
    return float(abs(canvas - screen).mean()) < 6.0


def frames(page: Any) -> int:
    return int(page.evaluate("() => window.impromptu.framesDecoded"))


def test_three_pages_show_the_desktop_and_one_killed_leaves_the_others_streaming(
    browser: Any, playwright: Any, tmp_path: Path
) -> None:
    with run_desktop("vdisplay", "run", *desktop_args("--size", "640x480"), "--", "sleep", "600") as desktop:
        paint = XWindow(desktop.display, 0, 0, 640, 480)
        try:
            paint.fill(0x3060C0)
            survivors = [open_operator(browser, desktop.url) for _ in range(2)]
            with chromium_of_its_own(playwright, desktop.url, tmp_path / "profile") as (doomed, third):
                third.wait_for_function("() => window.impromptu && window.impromptu.framesDecoded > 0", timeout=20_000)
                for page in [*survivors, third]:
                    wait_for(lambda page=page: shows_the_screen(page, desktop.display), 10, "every page to show X")
                    page.wait_for_function("() => window.impromptu.presence?.viewers === 3", timeout=10_000)
                os.killpg(doomed.pid, signal.SIGKILL)  # no goodbye on any channel
                doomed.wait()
            for colour in (0xC04020, 0x20A040, 0xE0E0E0):
                before = [frames(page) for page in survivors]
                paint.fill(colour)
                for page, decoded in zip(survivors, before, strict=True):
                    page.wait_for_function(f"() => window.impromptu.framesDecoded > {decoded}", timeout=10_000)
                    wait_for(lambda page=page: shows_the_screen(page, desktop.display), 10, "the new colour")
            for page in survivors:
                assert page.evaluate("() => window.impromptu.state") == "connected"
                assert not page.errors
        finally:
            paint.close()


def test_a_stopped_viewer_costs_the_others_nothing_and_recovers(browser: Any) -> None:
    """A probe stopped with SIGSTOP stops acknowledging: the desktop skips frames for it alone, and when it
    resumes it gets a keyframe and is told what it missed. The page streaming meanwhile keeps its frame rate."""
    args = desktop_args("--size", "1280x720")
    with run_desktop("vdisplay", "run", *args, "--", *moving_app(1280, 720)) as desktop:
        page = open_operator(browser, desktop.url)
        with probing(desktop.url, 24) as stalled, probing(desktop.view_url, 24) as healthy:
            page.wait_for_function("() => window.impromptu.presence?.viewers === 3", timeout=15_000)
            rates_before = [page_fps(page) for _ in range(3)]
            stalled.send_signal(signal.SIGSTOP)
            try:
                rates_during = [page_fps(page) for _ in range(8)]
            finally:
                stalled.send_signal(signal.SIGCONT)
            stalled_report = probe_report(stalled, timeout=60)
            healthy_report = probe_report(healthy, timeout=60)
    print("page fps before/during the stall:", rates_before, rates_during)
    print("healthy probe:", healthy_report)
    print("stalled probe:", stalled_report)

    assert healthy_report["ok"], healthy_report
    assert healthy_report["lost"] == 0 and healthy_report["skipped"] == 0, healthy_report
    assert statistics.median(rates_during) >= 0.8 * statistics.median(rates_before), (rates_before, rates_during)
    # Either the desktop dropped it, or it caught up: skipped frames, then a keyframe, then the stream again.
    if stalled_report["ok"]:
        assert stalled_report["skipped"] > 0, stalled_report
        assert stalled_report["lost"] <= 5, stalled_report
        assert stalled_report["per_second"][-1] > 0, "streaming again after it resumed"
    else:
        assert "closed" in stalled_report["error"], stalled_report


def page_fps(page: Any) -> int:
    """The page's frame rate over the next whole second (it counts decoded frames per second)."""
    before = page.evaluate("() => window.impromptu.fps")
    page.wait_for_timeout(1000)
    return int(page.evaluate("() => window.impromptu.fps") or before)


def test_view_only_page_watches_but_its_input_never_reaches_x(browser: Any) -> None:
    """The page side: a view-only page shows the desktop, says "View only", offers no control and sends no input.
    (That the desktop itself refuses input from a view-only viewer is tested with a Python viewer that does send
    it: tests/test_session.py.)"""
    with run_desktop("vdisplay", "run", *desktop_args("--size", "640x480", "-v"), "--", "sleep", "600") as desktop:
        target = XWindow(desktop.display, 0, 0, 640, 480, X.ButtonPressMask | X.KeyPressMask | X.PointerMotionMask)
        try:
            target.fill(0x808000)
            target.focus()
            page = open_operator(browser, desktop.view_url)
            wait_for(lambda: shows_the_screen(page, desktop.display), 10, "the view-only page to show X")
            page.wait_for_function("() => window.impromptu.presence?.role === 'view'", timeout=10_000)
            assert page.evaluate("() => window.impromptu.canControl") is False
            assert page.locator("#control").inner_text() == "View only"
            assert page.locator("#control-btn").is_hidden()
            to_page = screen_to_page(page, 640, 480)
            page.mouse.click(*to_page(300, 200))
            page.keyboard.type("nope")

            # A control page's click is the marker: input from the view-only page, sent before it, would have
            # reached X before it.
            control = open_operator(browser, desktop.url)
            control.mouse.click(*screen_to_page(control, 640, 480)(500, 400))
            (press,) = target.wait_events({X.ButtonPress})
            assert (press.root_x, press.root_y) == (500, 400), "the first press is the control page's"
            before = target.events[: target.events.index(press)]
            assert all(e.type == X.MotionNotify and (e.root_x, e.root_y) == (500, 400) for e in before), before
        finally:
            target.close()


def test_one_controller_hands_control_over_from_the_page(browser: Any) -> None:
    with run_desktop(
        "vdisplay", "run", *desktop_args("--size", "640x480", "--one-controller"), "--", "sleep", "600"
    ) as desktop:
        target = XWindow(desktop.display, 0, 0, 640, 480, X.ButtonPressMask)
        try:
            a, b = open_operator(browser, desktop.url), open_operator(browser, desktop.url)
            for page in (a, b):
                page.wait_for_function(
                    "() => window.impromptu.presence?.viewers === 2 && window.impromptu.presence.mode === 'one'",
                    timeout=10_000,
                )
                assert page.locator("#control").inner_text() == "Nobody has control"
            a.locator("#control-btn").click()  # Take control
            a.wait_for_function("() => window.impromptu.canControl", timeout=10_000)
            b.wait_for_function("() => /has control/.test(document.getElementById('control').textContent)")
            assert a.locator("#control").inner_text() == "You have control"
            assert b.evaluate("() => window.impromptu.canControl") is False

            b.mouse.click(*screen_to_page(b, 640, 480)(100, 100))  # not the holder: goes nowhere
            a.mouse.click(*screen_to_page(a, 640, 480)(200, 150))
            (press,) = target.wait_events({X.ButtonPress})
            assert (press.root_x, press.root_y) == (200, 150), "only the holder's click reaches X"

            b.locator("#control-btn").click()  # Request control
            a.wait_for_function("() => /^Give control/.test(document.getElementById('control-btn').textContent)")
            a.locator("#control-btn").click()  # Give control to b
            b.wait_for_function("() => window.impromptu.canControl", timeout=10_000)
            a.wait_for_function("() => !window.impromptu.canControl", timeout=10_000)
            target.events.clear()
            b.mouse.click(*screen_to_page(b, 640, 480)(321, 222))
            (press,) = target.wait_events({X.ButtonPress})
            assert (press.root_x, press.root_y) == (321, 222)
        finally:
            target.close()
