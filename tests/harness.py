"""Helpers for end-to-end tests: run the real `impromptu` command and a real headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
IMPROMPTU = [sys.executable, "-m", "impromptu"]
URL_RE = re.compile(r"Operator link: (\S+)")
VIEW_URL_RE = re.compile(r"View-only link: (\S+)")
DISPLAY_RE = re.compile(r"sharing display (:\d+)")
LOBBY_RE = re.compile(r"Lobby: (\S+)")


class Desktop:
    """A running `impromptu vdisplay run` (or `share`) process, with its link and display."""

    def __init__(self, proc: subprocess.Popen[str], url: str, view_url: str, display: str, stderr: list[str]) -> None:
        self.proc = proc
        self.url = url
        self.view_url = view_url
        self.display = display
        self.stderr = stderr

    def interrupt(self, timeout: float = 5.0) -> int:
        """Ctrl-C, as a terminal sends it; returns the exit status (fails if it takes over ``timeout``)."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash: the desktop cleans up nothing. Its children (Xvfb, the app), which it would have
        stopped, are then killed here, so that the test leaves no process behind."""
        left = descendants(self.proc.pid)
        self.proc.kill()
        self.proc.wait(timeout=10)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def peer_connections(self) -> int:
        """How many peer connections the desktop process holds: each has one UDP socket (ICE on one address,
        everything bundled), and nothing else in the process uses UDP."""
        return udp_sockets(self.proc.pid)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` now (children, their children, …), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        parent = int(stat.rpartition(")")[2].split()[1])  # (the command name may hold spaces and parentheses)
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def udp_sockets(pid: int) -> int:
    """The UDP sockets process ``pid`` has open, from /proc."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            next(f)
            inodes |= {line.split()[9] for line in f}
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def read_lines_until(
    proc: subprocess.Popen[str], patterns: dict[str, re.Pattern[str]], timeout: float
) -> tuple[dict[str, str], list[str]]:
    """Read stdout and stderr until every pattern matched a line; returns the first groups and all lines."""
    found: dict[str, str] = {}
    lines: list[str] = []
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    for stream in (proc.stdout, proc.stderr):
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    buffers: dict[Any, str] = {proc.stdout: "", proc.stderr: ""}
    deadline = time.monotonic() + timeout
    try:
        while len(found) < len(patterns):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (proc.poll() is not None and not sel.select(0)):
                raise AssertionError(f"impromptu did not print {set(patterns) - set(found)}: {lines}")
            for key, _ in sel.select(min(remaining, 0.5)):
                chunk = key.fileobj.read()  # type: ignore[union-attr]
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buffers[key.fileobj] += chunk
                *complete, buffers[key.fileobj] = buffers[key.fileobj].split("\n")
                for line in complete:
                    lines.append(line)
                    for name, pattern in patterns.items():
                        match = pattern.search(line)
                        if match and name not in found:
                            found[name] = match.group(1)
    finally:
        sel.close()
        for stream in (proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), True)
    return found, lines


@contextmanager
def run_desktop(*args: str, env: dict[str, str] | None = None) -> Iterator[Desktop]:
    """``impromptu ARGS`` bound to a free loopback port with ICE on 127.0.0.1 only."""
    command = [*IMPROMPTU, *args]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    try:
        found, lines = read_lines_until(proc, {"url": URL_RE, "view": VIEW_URL_RE, "display": DISPLAY_RE}, timeout=30)
        yield Desktop(proc, found["url"], found["view"], found["display"], lines)
    finally:
        _stop(proc)


class SignalServer:
    """A running `impromptu signal`: its lobby's address (with the token) and its base URL."""

    def __init__(self, proc: subprocess.Popen[str], lobby: str) -> None:
        self.proc = proc
        self.lobby = lobby
        self.base = lobby.partition("/#")[0]
        self.port = int(self.base.rpartition(":")[2])


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@contextmanager
def run_signal(token: str, port: int = 0, *extra: str) -> Iterator[SignalServer]:
    """``impromptu signal`` on 127.0.0.1:``port`` (a free one for 0) with ``token``."""
    proc = subprocess.Popen(
        [*IMPROMPTU, "signal", "--bind", f"127.0.0.1:{port}", "--token", token, *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    try:
        found, _ = read_lines_until(proc, {"lobby": LOBBY_RE}, timeout=30)
        yield SignalServer(proc, found["lobby"])
    finally:
        _stop(proc)


def desktop_args(*extra: str) -> list[str]:
    return ["--bind", "127.0.0.1:0", "--ice-address", "127.0.0.1", *extra]


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (a bounded wait on an external effect)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def moving_app(width: int, height: int) -> list[str]:
    """An app that keeps the whole screen moving at 30 fps: FFmpeg's testsrc2 pattern in ffplay."""
    return [
        "ffplay", "-loglevel", "error", "-nostats", "-an", "-noborder", "-left", "0", "-top", "0",
        "-x", str(width), "-y", str(height), "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30",
    ]  # fmt: skip


@contextmanager
def probing(url: str, seconds: float, *extra: str) -> Iterator[subprocess.Popen[str]]:
    """``impromptu probe URL --json`` on loopback ICE, running in the background; killed if still running."""
    command = [*IMPROMPTU, "probe", url, "--seconds", str(seconds), "--json", "--ice-address", "127.0.0.1", *extra]
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def probe_report(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The JSON report a probe prints when it ends."""
    out, err = proc.communicate(timeout=timeout)
    try:
        report: dict[str, Any] = json.loads(out)
    except ValueError:
        raise AssertionError(f"probe printed no report (exit {proc.returncode}): {out!r} {err!r}") from None
    report["exit"] = proc.returncode
    report["stderr"] = err
    return report


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10) -> None:
    """Until ``predicate()`` holds, asking again every 50 ms; fails after ``timeout_s``. For state that no event
    announces (another process's, the X server's)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s:g} s")
        await asyncio.sleep(0.05)
