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
  of its call phase (in ``failed`` mode: of a call or setup that failed); with ``failed`` only those of tests that
  failed (in setup, call or teardown) are kept. Their paths are added to the test's report (a section, and
  ``user_properties`` ``impromptu_recording``, ``impromptu_screenshot`` and ``impromptu_recorded_s``, which
  ``--junitxml`` writes as properties) and listed at the end of the run. A recording or a screenshot that fails
  never stops the run, nor warns (which ``-W error`` would make fatal): the report and the summary say so.
"""

from __future__ import annotations

import contextlib
import re
import time
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
RECORDED_PROPERTY = "impromptu_recorded_s"
"""Seconds of the test known to be in its recording: from its first frame being written (in the test's setup) to
the recording's stop (after its teardown)."""
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
    screenshot: Path
    recording: ScreenRecording | None = None
    """Until it is stopped, at the end of the test's teardown."""
    started: float | None = None
    """When the test went on with its recording started (``time.monotonic``)."""
    shot_taken: bool = False
    failed: bool = False
    failure: pytest.TestReport | None = None
    """The report of the setup or call that failed."""
    problems: list[str] = field(default_factory=list)
    """What went wrong with the recording or the screenshot, not yet reported."""


_RECORDING = pytest.StashKey[_TestRecording]()


def file_stem(nodeid: str) -> str:
    """A file name for a test, without a suffix: its node id with anything but letters, digits, ``.``, ``_`` and
    ``-`` as ``_``, its end if it is long, never starting with ``.`` (hidden) or ``-`` (an option)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)[-_MAX_NAME:]
    return stem.strip("._-") or "test"


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
        self.problems: list[tuple[str, str]] = []
        """(node id, what went wrong) with recordings and screenshots, for the terminal summary."""

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
            self._start_recording(item)
        return (yield)

    def _start_recording(self, item: pytest.Item) -> None:
        from impromptu.errors import ImpromptuError

        stem = base = file_stem(item.nodeid)
        number = 1
        while stem in self._stems:  # two node ids that differ only in characters a file name cannot hold
            number += 1
            stem = f"{base}-{number}"
        self._stems.add(stem)
        state = item.stash[_RECORDING] = _TestRecording(self.record_dir / f"{stem}.png")
        try:
            # The suffix is the stream's (.mp4 for H.264, .webm for VP8), whatever the node id ends with.
            state.recording = self.display.record(self.record_dir / f"{stem}{self.display.recording_suffix()}")
        except (ImpromptuError, OSError) as exc:
            state.problems.append(f"not recorded: {exc}")
            return
        # The test starts once its recording has: from its first frame on, everything is in it.
        if state.recording.wait_started():
            state.started = time.monotonic()
        else:
            state.problems.append("the recording had no frame after 2 s; the test went on")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        # Nothing here may raise, nor warn: an exception (a warning with -W error) in this hook is an INTERNALERROR
        # that ends the whole run. Problems go in the report's sections and the terminal summary instead.
        report: pytest.TestReport = yield
        state = item.stash.get(_RECORDING, None)
        if state is None:
            return report
        if report.when in ("setup", "call") and report.failed:
            state.failed = True
            state.failure = report
            self._last_frame(state)  # a setup that failed had no call phase
            lines = [f"recording: {state.recording.path}"] if state.recording is not None else []
            if state.shot_taken:
                lines.append(f"last frame: {state.screenshot}")
            if lines:
                report.sections.append(("impromptu", "\n".join(lines)))
        elif report.when == "call" and self.record_mode == "all":
            self._last_frame(state)
        if report.when == "teardown":
            # Decided here, once the teardown has run, so that a test that errors in teardown keeps its recording
            # too, and the recording lasts until the end of the teardown.
            state.failed = state.failed or report.failed
            self._finish(item, report, state)
        if state.problems:
            section = ("impromptu", "\n".join(f"impromptu: {p}" for p in state.problems))
            report.sections.append(section)
            if state.failure is not None and state.failure is not report:
                # Also where it shows: the failures are written out at the end, from their reports.
                state.failure.sections.append(section)
            self.problems.extend((item.nodeid, p) for p in state.problems)
            state.problems.clear()
        return report

    def _last_frame(self, state: _TestRecording) -> None:
        if state.shot_taken:
            return
        try:
            self.display.screenshot(state.screenshot)
        except Exception as exc:  # whatever it is, the run goes on: see pytest_runtest_makereport
            state.problems.append(f"no last-frame screenshot: {exc}")
        else:
            state.shot_taken = True

    def _finish(self, item: pytest.Item, report: pytest.TestReport, state: _TestRecording) -> None:
        recording, state.recording = state.recording, None
        if recording is None:
            return
        keep = self.record_mode == "all" or state.failed
        ended = time.monotonic()
        paths: list[Path] = []
        try:
            paths = recording.stop()
        except Exception as exc:  # a RecordError, or anything else: the run goes on all the same
            if keep:
                state.problems.append(f"recording failed: {exc}")
            keep = False  # no broken file to point at
            with contextlib.suppress(Exception):
                paths = recording.paths
        shot = state.screenshot if state.shot_taken and state.screenshot.exists() else None
        if not keep:
            for path in [*paths, state.screenshot]:
                with contextlib.suppress(OSError):
                    path.unlink()
            return
        properties = [(RECORDING_PROPERTY, str(path)) for path in paths]
        if state.started is not None:
            properties.append((RECORDED_PROPERTY, f"{ended - state.started:.3f}"))
        if shot is not None:
            properties.append((SCREENSHOT_PROPERTY, str(shot)))
        # The report holds a copy of the item's properties, made before this: --junitxml reads the teardown's.
        item.user_properties.extend(properties)
        report.user_properties.extend(properties)
        self.kept.append((item.nodeid, paths, shot))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.kept and not self.problems:
            return
        terminalreporter.write_sep("-", "impromptu recordings")
        for nodeid, paths, shot in self.kept:
            files = ", ".join(str(p) for p in paths) or "(no recording written)"
            extra = f" (last frame: {shot})" if shot is not None else ""
            terminalreporter.write_line(f"{nodeid}: {files}{extra}")
        for nodeid, problem in self.problems:
            terminalreporter.write_line(f"{nodeid}: impromptu: {problem}")
