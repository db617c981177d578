"""The pytest plugin (entry point ``pytest11``): GUI tests on a virtual display that someone can watch, and
recordings of the tests that failed.

Inert unless asked for: without ``--impromptu`` (or ``--impromptu-share`` / ``--impromptu-record``, which imply it)
it only adds its options and the ``vdisplay`` fixture, and importing it imports nothing else of impromptu.

- ``--impromptu``: one virtual display (Xvfb) for the whole session; tests get it through the ``vdisplay`` fixture
  (an ``impromptu.VirtualDisplay``: ``env`` for the apps they start, ``launch``, ``wait_for_window``, input,
  ``screenshot``). Apps a test launches through it are stopped when the test ends. ``os.environ`` is left alone.
- ``--impromptu-share``: the display is shared for the whole run; the operator and view-only links are printed at
  the top, so someone can watch the tests (or take over) while CI runs. ``--impromptu-bind HOST:PORT`` (default
  ``127.0.0.1:0``) and ``--impromptu-ice-address ADDR`` for a runner reached from elsewhere.
- ``--impromptu-record=failed|all``: every test is recorded from the start of its setup to the end of its
  teardown, in ``--impromptu-record-dir`` (default ``impromptu-recordings``), with a PNG of the screen at the end
  of its call phase; with ``failed`` only those of tests that failed (in setup or call) are kept. Their paths are
  added to the test's report (a section, and ``user_properties`` ``impromptu_recording`` and
  ``impromptu_screenshot``, which ``--junitxml`` writes as properties) and listed at the end of the run.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from impromptu.api import ScreenRecording, Share, VirtualDisplay

PLUGIN_NAME = "impromptu-session"
"""The name the enabled plugin's session object is registered under."""
RECORD_MODES = ("failed", "all")
RECORDING_PROPERTY = "impromptu_recording"
SCREENSHOT_PROPERTY = "impromptu_screenshot"
_MAX_NAME = 150


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("impromptu", "GUI tests on a virtual display (impromptu)")
    group.addoption(
        "--impromptu",
        action="store_true",
        default=False,
        help="run the session on a virtual X display (Xvfb); tests get it through the `vdisplay` fixture",
    )
    group.addoption(
        "--impromptu-share",
        action="store_true",
        default=False,
        help="share the display live while the tests run: print an operator link and a view-only link at the top",
    )
    group.addoption(
        "--impromptu-record",
        choices=RECORD_MODES,
        default=None,
        help="record each test; keep the recordings (and a last-frame PNG) of failed tests only, or of all",
    )
    group.addoption(
        "--impromptu-record-dir",
        default="impromptu-recordings",
        metavar="DIR",
        help="where recordings go (default: impromptu-recordings)",
    )
    group.addoption(
        "--impromptu-size", default="1280x800", metavar="WxH", help="the display's size (default: 1280x800)"
    )
    group.addoption(
        "--impromptu-bind",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where --impromptu-share serves its page (default: 127.0.0.1:0, a free port; not loopback: HTTPS)",
    )
    group.addoption(
        "--impromptu-ice-address",
        action="append",
        default=[],
        metavar="ADDR",
        help="with --impromptu-share: offer viewers only this address of the runner (repeatable)",
    )


def _enabled(config: pytest.Config) -> bool:
    option = config.option
    return bool(option.impromptu or option.impromptu_share or option.impromptu_record)


def pytest_configure(config: pytest.Config) -> None:
    if not _enabled(config) or config.pluginmanager.has_plugin(PLUGIN_NAME):
        return
    from impromptu.display import parse_size

    try:
        size = parse_size(config.option.impromptu_size)
    except ValueError as exc:
        raise pytest.UsageError(f"--impromptu-size: {exc}") from None
    record_dir = Path(config.option.impromptu_record_dir)
    if not record_dir.is_absolute():
        record_dir = config.invocation_params.dir / record_dir
    config.pluginmanager.register(ImpromptuSession(config, size, record_dir), PLUGIN_NAME)


@pytest.fixture
def vdisplay(request: pytest.FixtureRequest) -> Iterator[VirtualDisplay]:
    """The session's virtual display (``impromptu.VirtualDisplay``). Apps launched through it during the test are
    stopped (with their process groups) when the test ends. Needs ``pytest --impromptu``."""
    plugin = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    if not isinstance(plugin, ImpromptuSession):
        pytest.fail("the vdisplay fixture needs a virtual display: run pytest with --impromptu", pytrace=False)
    display = plugin.display
    before = set(display.apps)
    yield display
    for app in display.apps:
        if app not in before:
            display.stop_app(app)


@dataclass
class _TestRecording:
    recording: ScreenRecording
    screenshot: Path
    shot_taken: bool = False
    failed: bool = False
    paths: list[Path] = field(default_factory=list)


_RECORDING = pytest.StashKey[_TestRecording]()


def file_stem(nodeid: str) -> str:
    """A file name for a test: its node id with anything but letters, digits, ``.``, ``_`` and ``-`` as ``_``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("._") or "test"
    return stem[-_MAX_NAME:]


class ImpromptuSession:
    """The enabled plugin: the session's display, its share, and the recordings of the tests."""

    def __init__(self, config: pytest.Config, size: tuple[int, int], record_dir: Path) -> None:
        self.config = config
        self.size = size
        self.record_dir = record_dir
        self.record_mode: str | None = config.option.impromptu_record
        self._display: VirtualDisplay | None = None
        self.share: Share | None = None
        self._stems: set[str] = set()
        self.kept: list[tuple[str, list[Path], Path | None]] = []
        """(node id, recordings, last-frame PNG) of each test whose recording was kept, in order."""

    @property
    def display(self) -> VirtualDisplay:
        if self._display is None:
            from impromptu.api import VirtualDisplay

            self._display = VirtualDisplay(size=self.size).start()
        return self._display

    # -- session ---------------------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from impromptu.errors import ImpromptuError

        try:
            display = self.display
            if self.config.option.impromptu_share:
                self.share = display.share(
                    bind=self.config.option.impromptu_bind, ice_addresses=self.config.option.impromptu_ice_address
                )
        except ImpromptuError as exc:
            self.close()
            raise pytest.UsageError(f"impromptu: {exc}") from None
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and not getattr(reporter, "showheader", True):
            # -q prints no header: the links must show all the same, first thing.
            for line in self._header_lines():
                reporter.write_line(line)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        return self._header_lines()

    def _header_lines(self) -> list[str]:
        if self._display is None:
            return []
        width, height = self.size
        lines = [f"impromptu: virtual display {self._display.display} ({width}x{height})"]
        if self.share is not None:
            if self.share.operator_url is not None:
                lines.append(f"impromptu: watch and control the tests: {self.share.operator_url}")
            lines.append(f"impromptu: watch only: {self.share.view_url}")
            if self.share.fingerprint:
                lines.append(f"impromptu: HTTPS certificate SHA-256 fingerprint: {self.share.fingerprint}")
        if self.record_mode is not None:
            lines.append(f"impromptu: recording {self.record_mode} tests into {self.record_dir}")
        return lines

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.close()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close()

    def close(self) -> None:
        display, self._display = self._display, None
        if display is not None:
            display.close()

    # -- per test --------------------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        if self.record_mode is not None:
            stem = base = file_stem(item.nodeid)
            number = 1
            while stem in self._stems:  # two node ids that differ only in characters a file name cannot hold
                number += 1
                stem = f"{base}-{number}"
            self._stems.add(stem)
            # No suffix: the stream's own is appended (.mp4 for H.264, .webm for VP8).
            recording = self.display.record(self.record_dir / stem)
            item.stash[_RECORDING] = _TestRecording(recording, self.record_dir / f"{stem}.png")
            # The test starts once its recording has: from its first frame on, everything is in it.
            if not recording.wait_started():
                item.warn(pytest.PytestWarning("impromptu: the recording had no frame after 2 s; going on"))
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            self._last_frame(item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report: pytest.TestReport = yield
        state = item.stash.get(_RECORDING, None)
        if state is not None and report.when in ("setup", "call") and report.failed:
            state.failed = True
            self._last_frame(item)  # a setup that failed had no call phase
            report.sections.append(("impromptu", f"recording: {state.recording.path}\nlast frame: {state.screenshot}"))
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            state = item.stash.get(_RECORDING, None)
            if state is not None:
                self._finish(item, state)

    def _last_frame(self, item: pytest.Item) -> None:
        state = item.stash.get(_RECORDING, None)
        if state is None or state.shot_taken:
            return
        state.shot_taken = True
        from impromptu.errors import ImpromptuError

        try:
            self.display.screenshot(state.screenshot)
        except (ImpromptuError, OSError) as exc:
            state.shot_taken = False
            item.warn(pytest.PytestWarning(f"impromptu: no last-frame screenshot: {exc}"))

    def _finish(self, item: pytest.Item, state: _TestRecording) -> None:
        paths = state.recording.stop()
        keep = self.record_mode == "all" or state.failed
        shot = state.screenshot if state.shot_taken and state.screenshot.exists() else None
        if not keep:
            for path in [*paths, state.screenshot]:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            return
        for path in paths:
            item.user_properties.append((RECORDING_PROPERTY, str(path)))
        if shot is not None:
            item.user_properties.append((SCREENSHOT_PROPERTY, str(shot)))
        self.kept.append((item.nodeid, paths, shot))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.kept:
            return
        terminalreporter.write_sep("-", "impromptu recordings")
        for nodeid, paths, shot in self.kept:
            files = ", ".join(str(p) for p in paths) or "(no recording written)"
            extra = f" (last frame: {shot})" if shot is not None else ""
            terminalreporter.write_line(f"{nodeid}: {files}{extra}")
