"""`impromptu signal`, `--signal` on the desktop commands and `impromptu health`, as processes: bad input gets one
line and status 2, a desktop refused by the server ends with the reason and leaves nothing behind, configuration
through IMPROMPTU_* variables, and the heartbeat a container health check reads."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from impromptu import health
from tests.harness import IMPROMPTU, run_signal, wait_for

TOKEN = "cli-token-for-tests"


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMPROMPTU, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["vdisplay", "run", "--name", "x", "--", "true"], "--name goes with --signal URL"),
        (["vdisplay", "run", "--publish-links", "--", "true"], "--publish-links goes with --signal URL"),
        (["vdisplay", "run", "--signal", "http://127.0.0.1:9", "--", "true"], "needs the server's token"),
        (["vdisplay", "run", "--signal", "ftp://127.0.0.1:9/#token=secret", "--", "true"], "is not the http"),
        (
            ["vdisplay", "run", "--signal", "http://127.0.0.1:9/#token=t", "--bind", "0.0.0.0:1", "--", "true"],
            "--bind is for a desktop serving its own page",
        ),
        (["share", "--display", ":99", "--signal", "http://127.0.0.1:9/#token=t", "--name", " "], "name is missing"),
        (["signal", "--token", "short"], "--token: 8 to 256"),
        (["signal", "--bind", "nonsense"], "is not HOST:PORT"),
        (["health"], "no heartbeat file to check"),
    ],
)
def test_bad_input_gets_one_line_and_status_2(args: list[str], message: str) -> None:
    done = _run(*args, env={"IMPROMPTU_HEALTH_FILE": ""})
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "secret" not in done.stderr


def test_a_desktop_refused_by_the_server_ends_with_the_reason_and_leaves_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "app-ran"
    with run_signal(TOKEN) as server:
        app = ["sh", "-c", f'echo "$$ $DISPLAY" > {marker}; exec sleep 1000']
        desktop = subprocess.Popen(
            [*IMPROMPTU, "vdisplay", "run", "--ice-address", "127.0.0.1", "--signal", server.base, "--", *app],
            env={**os.environ, "IMPROMPTU_TOKEN": "not-the-token"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, stderr = desktop.communicate(timeout=30)
    assert desktop.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"impromptu: error: the signaling server at {server.base} refused this desktop: wrong token"
    )
    assert "not-the-token" not in stderr
    # The app had started on its display; both are gone now.
    app_pid, display = marker.read_text().split()
    assert not Path(f"/proc/{app_pid}").exists(), "the app is gone"
    assert not Path(f"/tmp/.X11-unix/X{display.lstrip(':')}").exists(), "and its Xvfb"


async def _lobby(base: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{base}/ws") as ws:
        await ws.send_json({"type": "hello", "role": "lobby", "token": TOKEN})
        message = json.loads((await ws.receive(timeout=10)).data)
        desktops: list[dict[str, Any]] = message["desktops"]
        return desktops


def test_configured_through_the_environment_with_heartbeats_for_health_checks(tmp_path: Path) -> None:
    signal_health = tmp_path / "signal.json"
    desktop_health = tmp_path / "desktop.json"
    with run_signal(TOKEN, 0, "--health-file", str(signal_health)) as server:
        env = {
            **os.environ,
            "IMPROMPTU_SIGNAL": server.base,
            "IMPROMPTU_TOKEN": TOKEN,
            "IMPROMPTU_NAME": "from the environment",
            "IMPROMPTU_PUBLISH_LINKS": "1",
            "IMPROMPTU_SIZE": "320x200",
            "IMPROMPTU_ICE_ADDRESS": "127.0.0.1",
            "IMPROMPTU_HEALTH_FILE": str(desktop_health),
        }
        desktop = subprocess.Popen(
            [*IMPROMPTU, "vdisplay", "run", "--", "sleep", "1000"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            listed = wait_for(
                lambda: [d for d in asyncio.run(_lobby(server.base)) if d["width"]], 20, "the desktop listed"
            )
            (card,) = listed
            assert (card["name"], card["width"], card["height"]) == ("from the environment", 320, 200)
            assert card["links"] is not None
            for path in (signal_health, desktop_health):
                wait_for(path.exists, 10, f"{path.name} written")
                checked = _run("health", env={"IMPROMPTU_HEALTH_FILE": str(path)})
                assert (checked.returncode, checked.stdout.strip()) == (0, "healthy"), checked
            beat = wait_for(
                lambda: (
                    json.loads(desktop_health.read_text()).get("signaling") == "connected"
                    and json.loads(desktop_health.read_text())
                ),
                10,
                "the heartbeat to say the desktop is seated",
            )
            assert beat["ok"] is True and beat["pid"] == desktop.pid
        finally:
            desktop.send_signal(2)
            assert desktop.wait(timeout=15) == 130
        assert not desktop_health.exists(), "a desktop that ended leaves no heartbeat to be read as healthy"
    checked = _run("health", "--file", str(signal_health))
    assert checked.returncode == 1 and "not running" in checked.stderr, checked


def test_a_stale_or_unhealthy_heartbeat_is_reported(tmp_path: Path) -> None:
    beat = tmp_path / "beat.json"
    health.write(beat, {"ok": True})
    assert health.check(beat) is None
    assert "is 20 s old" in str(health.check(beat, now=time.time() + 20))
    health.write(beat, {"ok": False, "problem": "the X server went away"})
    assert health.check(beat) == "unhealthy: the X server went away"
    beat.write_text("{not json")
    assert "cannot be read" in str(health.check(beat))
