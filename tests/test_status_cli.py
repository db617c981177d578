"""``impromptu status`` and ``/metrics`` against a desktop process, as a user and a Prometheus server use them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.harness import IMPROMPTU, desktop_args, run_desktop
from tests.test_cli import assert_one_line_error, impromptu

ROOT = Path(__file__).parent.parent
METRICS_RE = re.compile(r"metrics: (\S+) \(Authorization: Bearer (\S+)\)")


def status(*args: str, link: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMPROMPTU, "status", "-", *args], input=link + "\n", capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def fetch(url: str, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_status_and_metrics(xvfb_display: str) -> None:
    with run_desktop("share", "--display", xvfb_display, *desktop_args()) as desktop:
        found = next(m for m in map(METRICS_RE.search, desktop.stderr) if m)
        url, token = found[1], found[2]
        assert fetch(url, None)[0] == 401 and fetch(url, "not-the-token")[0] == 401
        code, text = fetch(url, token)
        assert code == 200 and 'impromptu_surface_target_fps{surface="0"} 30' in text

        shown = status(link=desktop.url)
        assert shown.returncode == 0, shown.stderr
        assert "capture ms" in shown.stdout and "(this status)" in shown.stdout

        as_json = status("--json", link=desktop.url)
        assert as_json.returncode == 0, as_json.stderr
        snapshot = json.loads(as_json.stdout)
        assert set(snapshot) >= {"desktop", "viewers"} and snapshot["desktop"]["surfaces"]

        viewer = status("--json", link=desktop.view_url)
        assert viewer.returncode == 0, viewer.stderr
        assert len(json.loads(viewer.stdout)["viewers"]) == 1, "a view-only link sees only its own connection"


def test_a_bad_metrics_token_is_one_line_and_status_2() -> None:
    result = impromptu("share", "--display", ":99", "--metrics-token", "short")
    assert result.returncode == 2
    assert_one_line_error(result, "--metrics-token")


def test_status_watch_prints_every_second_until_ctrl_c(xvfb_display: str) -> None:
    with run_desktop("share", "--display", xvfb_display, *desktop_args()) as desktop:
        watcher = subprocess.Popen(
            [*IMPROMPTU, "status", "-", "--watch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert watcher.stdin is not None and watcher.stdout is not None
            watcher.stdin.write(desktop.url + "\n")
            watcher.stdin.close()
            headers = 0
            for line in watcher.stdout:
                headers += line.startswith("surface")
                if headers == 2:
                    break
            assert headers == 2, "status --watch did not print twice"
            watcher.send_signal(signal.SIGINT)
            assert watcher.wait(timeout=10) == 0
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
            for stream in (watcher.stdout, watcher.stderr):
                if stream is not None:
                    stream.close()
