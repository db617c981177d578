"""The real thing under test: an ``impromptu vdisplay run`` process, and real Chromium viewers on its link."""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from bench.common import descendants, proc_stat, spawn, stop_process
from tests.harness import CHROMIUM, CHROMIUM_ARGS, URL_RE  # one set of Chromium flags for tests and benchmarks

VIEWPORT = {"width": 1280, "height": 800}
DISPLAY_RE = re.compile(r"sharing display (:\d+)")
START_TIMEOUT_S = 30.0
FIRST_FRAME_TIMEOUT_MS = 20_000


class Desktop:
    """A running ``impromptu vdisplay run``: its process, link, display, and the last lines it printed."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.url = ""
        self.display = ""
        self.output: collections.deque[str] = collections.deque(maxlen=50)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._open = 2  # pipes not yet at end of file
        # Drain both pipes for the whole run: the app inherits them, and a full pipe would stall it.
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._lines.put(line.rstrip("\n"))
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not (self.url and self.display):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._open == 0:
                raise RuntimeError(f"impromptu did not start: {' | '.join(self.output) or '(no output)'}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._open -= 1
                continue
            self.output.append(line)
            if (m := URL_RE.search(line)) and not self.url:
                self.url = m.group(1)
            if (m := DISPLAY_RE.search(line)) and not self.display:
                self.display = m.group(1)
        threading.Thread(target=self._keep_tail, daemon=True).start()

    def _keep_tail(self) -> None:
        while self._open > 0:
            line = self._lines.get()
            if line is None:
                self._open -= 1
            else:
                self.output.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> dict[str, list[int]]:
        """The desktop's descendants (Xvfb, the app and whatever it started), by command name."""
        found: dict[str, list[int]] = {}
        for p in descendants(self.proc.pid):
            found.setdefault(p.comm, []).append(p.pid)
        return found

    def alive(self) -> bool:
        return self.proc.poll() is None and proc_stat(self.proc.pid) is not None


@contextmanager
def run_desktop(
    size: tuple[int, int], app: Sequence[str], fps: int = 30, options: Sequence[str] = ()
) -> Iterator[Desktop]:
    """``impromptu vdisplay run`` on a free loopback port, ICE on 127.0.0.1 only (no STUN), running ``app``;
    ``options`` go before the ``--`` (``--max-direct 1``, say)."""
    command = [
        sys.executable, "-m", "impromptu", "vdisplay", "run",
        "--size", f"{size[0]}x{size[1]}", "--fps", str(fps),
        "--bind", "127.0.0.1:0", "--ice-address", "127.0.0.1", *options,
        "--", *app,
    ]  # fmt: skip
    # Ctrl-C, as a terminal sends it: impromptu stops the app and Xvfb itself.
    with desktop_process(command, signal.SIGINT) as desktop:
        yield desktop


@contextmanager
def run_pertrack(size: tuple[int, int]) -> Iterator[Desktop]:
    """``bench/pertrack.py`` (testsrc2, one libx264 encoder per viewer, a track per POSTed offer): it prints the
    same lines as impromptu, so ``Desktop`` reads its link (the offer endpoint) and display."""
    command = [sys.executable, "-m", "bench.pertrack", "--size", f"{size[0]}x{size[1]}", "--ice-address", "127.0.0.1"]
    with desktop_process(command) as desktop:
        yield desktop


@contextmanager
def desktop_process(command: Sequence[str], stop_signal: signal.Signals = signal.SIGTERM) -> Iterator[Desktop]:
    """A desktop process that prints impromptu's start-up lines, once it has printed its link and display; stopped
    with ``stop_signal`` at the end."""
    proc = spawn(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        desktop = Desktop(proc)
        desktop.wait_ready()
        yield desktop
    finally:
        stop_process(proc, stop_signal, timeout=15)


class Browsers:
    """One headless Debian Chromium driven by Playwright, started on first use and shared by the benchmarks; and
    dedicated ones on request (``dedicated_browser``), through the same Playwright driver."""

    def __init__(self) -> None:
        self._playwright: Any = None
        self._browser: Any = None

    def playwright(self) -> Any:
        """Playwright's driver (a Node.js child process), started on first use."""
        if self._playwright is None:
            if not Path(CHROMIUM).exists():
                raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (make deps-test)")
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
        return self._playwright

    def launch(self) -> Any:
        """A new headless Chromium with the tests' flags; the caller closes it."""
        return self.playwright().chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)

    def browser(self) -> Any:
        if self._browser is None:
            self._browser = self.launch()
        return self._browser

    def version(self) -> str:
        """The browser's version, once it has started."""
        return str(self._browser.version) if self._browser is not None else ""

    def chromium_pids(self) -> list[int]:
        """Every Chromium process we started (browser, renderers, GPU/utility processes)."""
        return [p.pid for p in descendants(os.getpid()) if "chrom" in p.comm.lower()]

    def close(self) -> None:
        """Close the browser and the driver; after a Ctrl-C (which reaches the driver too) they may be gone."""
        browser, self._browser = self._browser, None
        playwright, self._playwright = self._playwright, None
        if browser is not None:
            with contextlib.suppress(Exception):
                browser.close()
        if playwright is not None:
            with contextlib.suppress(Exception):
                playwright.stop()


DRIVER_COMM = "node"
"""How the command name of Playwright's driver process begins (Node.js names it ``node-MainThread``): the parent
of every browser it launches."""


class BrowserTree:
    """A Chromium of its own: its Playwright handle and its process tree (browser, zygotes, renderers, GPU and
    utility processes), so that its CPU can be told apart from any other browser's."""

    def __init__(self, browser: Any, root: int) -> None:
        self.browser = browser
        self.root = root

    def pids(self) -> list[int]:
        """The browser process and all its descendants, now."""
        return [self.root, *(p.pid for p in descendants(self.root))]


@contextmanager
def dedicated_browser(browsers: Browsers) -> Iterator[BrowserTree]:
    """A Chromium launched for the caller alone, closed at the end. Its process tree is what appeared under
    Playwright's driver during the launch (Playwright does not say which pid it started)."""
    browsers.playwright()  # the driver first, so that its only new child is the browser
    me = os.getpid()
    before = {p.pid: p.comm for p in (proc_stat(me), *descendants(me)) if p is not None}
    browser = browsers.launch()
    try:
        # New children of Playwright's driver (Node.js), not of a desktop starting its app or of another browser.
        roots = [
            p.pid for p in descendants(me) if p.pid not in before and before.get(p.ppid, "").startswith(DRIVER_COMM)
        ]
        if len(roots) != 1:
            raise RuntimeError(f"cannot tell the new Chromium's process among {roots}: is another one starting?")
        yield BrowserTree(browser, roots[0])
    finally:
        with contextlib.suppress(Exception):  # after a Ctrl-C the driver, and with it the browser, may be gone
            browser.close()


@contextmanager
def viewer(browsers: Browsers, url: str, init_script: str | None = None) -> Iterator[Any]:
    """A page on ``url`` that has decoded its first frame; ``init_script`` runs before the page's own code."""
    page = browsers.browser().new_page(viewport=VIEWPORT)
    try:
        if init_script is not None:
            page.add_init_script(script=init_script)
        page.goto(url)
        page.wait_for_function(
            "() => window.impromptu && window.impromptu.framesDecoded > 0", timeout=FIRST_FRAME_TIMEOUT_MS
        )
        yield page
    finally:
        with contextlib.suppress(Exception):  # the browser may be gone already (Ctrl-C)
            page.close()


def frames_decoded(page: Any) -> int:
    return int(page.evaluate("() => window.impromptu.framesDecoded"))
