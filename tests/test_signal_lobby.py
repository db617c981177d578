"""A standalone `impromptu signal` with its lobby, in real Chromium (docs/protocol.md §11): two desktops join it,
the lobby lists both with their pictures, each opens onto its own screen, a restart of the server leaves open
streams alone while the desktops come back to the lobby, and a wrong lobby token is refused."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest

from tests.browser import canvas_pixels
from tests.harness import Desktop, run_desktop, run_signal, wait_for

pytestmark = pytest.mark.timeout(180)

TOKEN = "lobby-token-for-tests"
SIZE = (480, 300)
COLORS = {"alpha": (208, 32, 32), "beta": (32, 64, 208)}
GREEN = (32, 192, 64)


def _solid(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def _desktop(stack: ExitStack, base: str, name: str) -> Desktop:
    """A desktop whose screen is all ``COLORS[name]``, joined to the server at ``base`` with its links published."""
    paint = f"xsetroot -solid '{_solid(COLORS[name])}' && exec sleep 100000"
    return stack.enter_context(
        run_desktop(
            "vdisplay",
            "run",
            "--size",
            f"{SIZE[0]}x{SIZE[1]}",
            "--ice-address",
            "127.0.0.1",
            "--signal",
            f"{base}/#token={TOKEN}",
            "--name",
            name,
            "--publish-links",
            "--",
            "sh",
            "-c",
            paint,
        )
    )


def _near(pixel: Any, color: tuple[int, int, int], tolerance: int = 40) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, dtype=int)[:3] - np.asarray(color)) <= tolerance))


def _cards(lobby: Any) -> dict[str, dict[str, Any]]:
    """Each desktop card the lobby shows, by the name on it: its link and the middle pixel of its picture."""
    return lobby.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('li.desktop')].map((li) => {
            const img = li.querySelector('img');
            let pixel = null;
            if (img && img.src.startsWith('data:image/') && img.complete && img.naturalWidth > 0) {
                const c = document.createElement('canvas');
                c.width = img.naturalWidth; c.height = img.naturalHeight;
                const ctx = c.getContext('2d');
                ctx.drawImage(img, 0, 0);
                pixel = Array.from(ctx.getImageData(c.width >> 1, c.height >> 1, 1, 1).data);
            }
            const link = li.querySelector('a.open');
            return [li.dataset.name ?? li.querySelector('.name')?.textContent ?? li.textContent, {
                href: link ? link.getAttribute('href') : null, pixel, text: li.textContent, id: li.dataset.id,
            }];
        }))"""
    )


def _listed_with_pictures(lobby: Any, old_ids: frozenset[str] = frozenset()) -> dict[str, dict[str, Any]] | None:
    cards = _cards(lobby)
    named = {name: card for name in COLORS for key, card in cards.items() if name in key and card["id"] not in old_ids}
    if set(named) != set(COLORS) or any(card["pixel"] is None for card in named.values()):
        return None
    return named


@pytest.fixture
def lobby_setup(browser: Any) -> Iterator[tuple[Any, dict[str, Desktop], Any]]:
    with ExitStack() as stack:
        server = stack.enter_context(run_signal(TOKEN))
        desktops = {name: _desktop(stack, server.base, name) for name in COLORS}
        context = browser.new_context(viewport={"width": 1100, "height": 800})
        stack.callback(context.close)
        yield server, desktops, context


def _center(page: Any) -> Any:
    return canvas_pixels(page, 16, 10)[5, 8]


def test_two_desktops_in_the_lobby_each_opens_its_own_screen_and_a_restart_stops_no_stream(
    lobby_setup: tuple[Any, dict[str, Desktop], Any],
) -> None:
    server, desktops, context = lobby_setup
    lobby = context.new_page()
    errors: list[str] = []
    lobby.on("pageerror", lambda exc: errors.append(str(exc)))
    lobby.goto(server.lobby)
    cards = wait_for(lambda: _listed_with_pictures(lobby), 20, "both desktops listed with their pictures")
    for name, card in cards.items():
        assert _near(card["pixel"], COLORS[name]), f"{name}'s picture shows {card['pixel']}"
        assert card["href"] is not None and card["href"].startswith(f"{server.base}/view#c="), card
        assert f"{SIZE[0]}×{SIZE[1]}" in card["text"], card["text"]

    # One click on a card opens that desktop's operator page, onto its own screen.
    pages = {}
    for name in COLORS:
        with context.expect_page() as opened:
            lobby.locator("li.desktop", has_text=name).locator("a.open").click()
        page = opened.value
        page.wait_for_function("() => window.impromptu && window.impromptu.framesDecoded > 0", timeout=20_000)
        try:
            wait_for(lambda page=page, name=name: _near(_center(page), COLORS[name]), 10, f"{name}'s screen")
        except AssertionError as exc:
            shown = page.evaluate("() => [window.impromptu.state, window.impromptu.framesDecoded, location.hash]")
            raise AssertionError(f"{exc}: the page shows {_center(page)} ({shown})") from None
        pages[name] = page
    assert desktops["alpha"].url.endswith(pages["alpha"].url.partition("/view")[2])

    # Record every state the alpha page goes through from now on.
    alpha = pages["alpha"]
    alpha.evaluate(
        """() => {
            window.seenStates = new Set();
            const now = () => [window.impromptu.state, window.impromptu.reason].filter(Boolean).join(': ');
            setInterval(() => window.seenStates.add(now()), 20);
        }"""
    )
    starts = alpha.evaluate("() => window.impromptu.surfaces.map((s) => s.starts)")
    old_ids = frozenset(card["id"] for card in cards.values())

    # The signaling server goes away and comes back on the same port.
    server_port = server.port
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=10) == 0
    with run_signal(TOKEN, server_port) as restarted:
        came_back = time.monotonic()
        # (Cards of the new server: the ids are new, so old cards still on the page do not count.)
        wait_for(lambda: _listed_with_pictures(lobby, old_ids), 5, "both desktops back in the lobby within 5 s")
        back_in = time.monotonic() - came_back
        # The stream went on all along: a change on alpha's screen shows without any reconnection.
        subprocess.run(
            ["xsetroot", "-display", desktops["alpha"].display, "-solid", _solid(GREEN)], check=True, timeout=10
        )
        wait_for(lambda: _near(_center(alpha), GREEN), 10, "alpha's change after the restart")
        assert alpha.evaluate("() => [...window.seenStates]") == ["connected"]
        assert alpha.evaluate("() => window.impromptu.surfaces.map((s) => s.starts)") == starts
        assert desktops["alpha"].peer_connections() == 1
        # And a new viewer gets in through the restarted server.
        with context.expect_page() as opened:
            lobby.locator("li.desktop", has_text="beta").locator("a.open").click()
        opened.value.wait_for_function("() => window.impromptu && window.impromptu.framesDecoded > 0", timeout=20_000)
        assert restarted.port == server_port
    print(f"desktops back in the lobby {back_in:.2f} s after the signaling server restarted")
    assert errors == []


def test_a_wrong_lobby_token_is_refused(browser: Any) -> None:
    with run_signal(TOKEN) as server:
        page = browser.new_page()
        try:
            page.goto(f"{server.base}/#token=not-the-token")
            alert = page.locator("[role=alert]")
            alert.wait_for(timeout=10_000)
            assert "wrong lobby token" in alert.inner_text().lower()
            assert page.locator("li.desktop").count() == 0
        finally:
            page.close()
