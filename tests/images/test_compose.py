"""The container images end to end: compose/docker-compose.yml as `make images-test` brings it up (images/test.sh:
its own project name and token, ICE on 127.0.0.1, all in a network namespace of its own), checked from outside
with podman and operated from the lobby in a real headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.browser import canvas_pixels
from tests.harness import CHROMIUM, wait_for

pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.skipif(os.environ.get("IMPROMPTU_IMAGES_TEST") != "1", reason="run by `make images-test` only"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make images-test installs it)"),
]

PROJECT = os.environ.get("IMPROMPTU_COMPOSE_PROJECT", "")
TOKEN = os.environ.get("IMPROMPTU_TOKEN", "")
LOBBY = f"http://127.0.0.1:8080/#token={TOKEN}"
SERVICES = ("signal", "firefox", "xterm")
DESKTOPS = ("firefox", "xterm")


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=60)


def container(service: str) -> str:
    """The name of this project's container for ``service`` (found by compose's labels, whatever it named it)."""
    names = podman(
        "ps", "--format", "{{.Names}}",
        "--filter", f"label=io.podman.compose.project={PROJECT}",
        "--filter", f"label=com.docker.compose.service={service}",
    ).stdout.split()  # fmt: skip
    assert len(names) == 1, f"one running container for {service} in {PROJECT}, found {names}"
    return names[0]


def health(name: str) -> str:
    (state,) = json.loads(podman("inspect", name).stdout)
    block = state["State"].get("Health") or state["State"].get("Healthcheck") or {}
    return str(block.get("Status", ""))


def healthz() -> bool:
    try:
        with urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize("service", SERVICES)
def test_containers_become_healthy(service: str) -> None:
    name = container(service)
    # Where systemd runs podman's health timers they get there by themselves; elsewhere (a container, this
    # sandbox) `podman healthcheck run` runs the image's HEALTHCHECK now and records its result the same way.
    wait_for(lambda: podman("healthcheck", "run", name, check=False).returncode == 0, 60, f"{name} healthy", 1.0)
    assert health(name) == "healthy"


@pytest.mark.parametrize("service", SERVICES)
def test_tini_is_pid_1_and_nothing_runs_as_root(service: str) -> None:
    table = podman("top", container(service), "pid", "user", "args").stdout.splitlines()[1:]
    processes = {int(pid): (user, args) for pid, user, args in (line.split(None, 2) for line in table)}
    assert processes[1][1].startswith("/usr/bin/tini -- impromptu "), processes[1]
    assert {user for user, _ in processes.values()} == {"impromptu"}, processes
    if service in DESKTOPS:
        assert any(args.startswith("/usr/bin/Xvfb ") for _, args in processes.values()), processes


def test_lobby_lists_both_desktops_and_opens_them(browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    errors: list[str] = []
    lobby = context.new_page()
    lobby.on("pageerror", lambda exc: errors.append(str(exc)))
    lobby.goto(LOBBY)

    # Both desktops are listed by name, each with its thumbnail loaded.
    cards = {name: lobby.locator("li.desktop", has_text=name) for name in DESKTOPS}
    for name, card in cards.items():
        card.locator("img").wait_for(timeout=60_000)
        lobby.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0 && img.src.startsWith('data:image/jpeg')",
            arg=card.locator("img").element_handle(),
            timeout=30_000,
        )
        assert card.count() == 1, f"one card for {name}"

    # Each card opens its desktop's operator page in a new tab, which decodes the screen.
    pages = {}
    for name, card in cards.items():
        with context.expect_page() as opened:
            card.locator("a.open").click()
        page = opened.value
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.wait_for_function("() => window.impromptu && window.impromptu.framesDecoded > 0", timeout=30_000)
        assert page.evaluate("window.impromptu.lastConfig.width") == 1280
        pages[name] = page

    # Firefox shows its window, over the whole screen (no black margin at the right or bottom).
    def firefox_fills_the_screen() -> bool:
        pixels = canvas_pixels(pages["firefox"], 160, 100).astype(float)
        return bool(pixels.std() > 10 and pixels[:, -4:].mean() > 60 and pixels[-4:, :].mean() > 60)

    wait_for(firefox_fills_the_screen, 30, "Firefox's window over the whole canvas", 0.5)

    # Keys typed in the xterm's page run a command in the xterm, inside its container.
    xterm = pages["xterm"]
    before = canvas_pixels(xterm, 160, 100)
    box = xterm.locator("#screen").bounding_box()
    xterm.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # pointer focus: no window manager
    xterm.keyboard.type("echo hello-impromptu > /tmp/typed")
    xterm.keyboard.press("Enter")
    name = container("xterm")
    wait_for(
        lambda: podman("exec", name, "cat", "/tmp/typed", check=False).stdout == "hello-impromptu\n",
        15,
        "the command typed in the page to run in the xterm container",
        0.5,
    )
    # ... and the page shows what was typed.
    wait_for(lambda: np.abs(canvas_pixels(xterm, 160, 100).astype(int) - before).max() > 40, 10, "the echo on screen")
    assert not errors
    context.close()


def test_desktops_rejoin_a_restarted_signal_server(browser: Any) -> None:
    """The desktops reconnect by themselves (and the lobby with them): start order and restarts do not matter."""
    podman("restart", "-t", "5", container("signal"))
    wait_for(healthz, 30, "the signal server to answer /healthz again", 0.25)
    page = browser.new_page()
    page.goto(LOBBY)
    for name in DESKTOPS:
        page.locator("li.desktop", has_text=name).locator("img").wait_for(timeout=30_000)
    page.close()
