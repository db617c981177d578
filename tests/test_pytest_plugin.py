"""The pytest plugin (impromptu/pytest_plugin.py), on the sample GUI suite in tests/gui_sample run in a pytest of its
own: the failed test's recording (decoded with PyAV), its last-frame PNG, the JUnit property, the summary, and the
links printed by --impromptu-share."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from impromptu.pytest_plugin import PLUGIN_NAME, file_stem

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = "tests/gui_sample/sample_gui.py"
FAILING = f"{SAMPLE}::test_red_window_fails_on_purpose"
TEARDOWN = f"{SAMPLE}::test_teardown_fails_on_purpose"
WIDTH, HEIGHT = 640, 480
SQUARE = 48
"""The side of the white square the failing test's app moves across its red window (gui_sample/colour_app.py)."""

needs_xvfb = pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb")


def run_sample(*args: str, timeout: float = 120, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "DISPLAY")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--color=no", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def is_red(pixel: np.ndarray) -> bool:
    r, g, b = (int(v) for v in pixel)
    return r > 200 and g < 60 and b < 60


def test_inert_unless_asked(request: pytest.FixtureRequest) -> None:
    # Loaded through its entry point in this very run (which has no --impromptu), and doing nothing.
    assert request.config.pluginmanager.has_plugin("impromptu")
    assert request.config.pluginmanager.get_plugin(PLUGIN_NAME) is None


@needs_xvfb
def test_vdisplay_without_the_option_says_what_to_do() -> None:
    result = run_sample("-q", "-k", "green", SAMPLE)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "run pytest with --impromptu" in result.stdout
    assert "impromptu:" not in result.stdout.split("run pytest with --impromptu")[0]


def test_file_names_from_node_ids() -> None:
    assert file_stem("tests/a.py::test_x[1-two words/é]") == "tests_a.py_test_x_1-two_words"
    assert file_stem("a/b::c[..]") == "a_b_c"
    assert file_stem("[..]") == "test"
    # The plugin appends the stream's suffix itself: a node id ending like a file name stays part of the stem.
    assert file_stem("t.py::test_x[clip.webm]") == "t.py_test_x_clip.webm"
    assert len(file_stem("t.py::" + "x" * 400)) == 150
    # Cut to its end, a long one must not start like a hidden file or an option.
    for filler in ("._-", "-", "."):
        stem = file_stem("t.py::test_" + filler * 200 + "end")
        assert 0 < len(stem) <= 150 and stem[0] not in "._-" and stem.endswith("end"), stem


def _recording_failed(folder: Path, junit: Path) -> list[str]:
    """The sample suite recorded, failures kept in ``folder``, its JUnit XML in ``junit``."""
    kept = ["--impromptu-record=failed", "--impromptu-record-dir", str(folder)]
    return [*kept, "--impromptu-size", f"{WIDTH}x{HEIGHT}", "--junitxml", str(junit), SAMPLE]


@needs_xvfb
def test_failed_test_leaves_a_recording_of_itself(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    junit = tmp_path / "junit.xml"
    result = run_sample("--impromptu", *_recording_failed(folder, junit))
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert re.search(r"^=+ 1 failed, 3 passed, 1 error in ", out, re.MULTILINE), out
    header = out.split("collected")[0]
    assert re.search(rf"^impromptu: virtual display :\d+ \({WIDTH}x{HEIGHT}\)$", header, re.MULTILINE), out

    # Only the failed tests' recordings are kept, and the picture of the one that failed in its call (the other
    # passed its call: no picture of it is taken, in this mode).
    stem = file_stem(FAILING)
    video, picture = folder / f"{stem}.mp4", folder / f"{stem}.png"
    torn = folder / f"{file_stem(TEARDOWN)}.mp4"
    assert sorted(p.name for p in folder.iterdir()) == sorted([video.name, picture.name, torn.name])

    # The JUnit XML: one failure and one error, with the files as properties.
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("errors"), suite.get("tests")) == ("1", "1", "4")
    case = next(c for c in suite.iter("testcase") if c.get("name") == "test_red_window_fails_on_purpose")
    assert case.find("failure") is not None
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    recorded_s = float(properties.pop("impromptu_recorded_s") or "nan")
    assert properties == {"impromptu_recording": str(video), "impromptu_screenshot": str(picture)}
    torn_case = next(c for c in suite.iter("testcase") if c.get("name") == "test_teardown_fails_on_purpose")
    assert torn_case.find("error") is not None
    torn_properties = {p.get("name"): p.get("value") for p in torn_case.iter("property")}
    assert torn_properties.keys() == {"impromptu_recording", "impromptu_recorded_s"}
    assert torn_properties["impromptu_recording"] == str(torn)
    for passed in suite.iter("testcase"):
        if passed not in (case, torn_case):
            assert passed.find("properties") is None

    # The report: a section in the failure, and the summary at the end.
    assert f"recording: {video}" in out and f"last frame: {picture}" in out
    summary = out.split("impromptu recordings")[1]
    assert f"{FAILING}: {video} (last frame: {picture})" in summary
    assert f"{TEARDOWN}: {torn}\n" in summary

    # The recording decodes, lasts as long as the test, and shows the app: its red window with the white square
    # moving across it.
    with av.open(str(video)) as container:
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert len(frames) >= 10
    assert frames[0][1].shape == (HEIGHT, WIDTH, 3)
    duration = frames[-1][0] - frames[0][0]
    # The test sleeps 1.5 s showing the window; the window's start and the teardown add a little. The plugin
    # says how long the test ran with its recording on (``impromptu_recorded_s``: from the first frame written, in
    # setup, to the stop, after teardown): the video holds all of it (less a frame interval at 30 fps, for where
    # the capture ticks fall), and little more (the first keyframe is captured a few encoding delays before it is
    # written; the stop waits for a frame captured after it, up to the next capture tick). A recording of anything
    # longer than the test (the whole session, the other tests) fails the upper bound.
    assert duration >= 1.4
    assert recorded_s - 1 / 30 - 0.02 <= duration <= recorded_s + 0.3, (duration, recorded_s)
    red = [t for t, rgb in frames if is_red(rgb[HEIGHT // 4, WIDTH // 4])]
    # Trimmed to the test: it starts before the app's window is there, and ends after the app was stopped.
    assert frames[0][0] not in red and frames[-1][0] not in red
    assert len(red) >= len(frames) // 2
    assert red[-1] - red[0] >= 1.2
    squares = set()
    for t, rgb in frames:
        if t in red:
            white = np.all(rgb[HEIGHT // 2 - SQUARE // 2 : HEIGHT // 2 + SQUARE // 2] > 200, axis=2)
            columns = np.flatnonzero(white.sum(axis=0) > SQUARE * 0.8)
            if len(columns):
                assert SQUARE - 4 <= len(columns) <= SQUARE + 4
                squares.add(int(columns[0]))
    assert len(squares) >= 5, "the white square does not move across the recording"

    # The PNG: the screen at the end of the test's call, the red window.
    shot = cv2.imread(str(picture))
    assert shot is not None and shot.shape == (HEIGHT, WIDTH, 3)
    assert is_red(shot[HEIGHT // 4, WIDTH // 4, ::-1])


@needs_xvfb
def test_share_prints_the_links_first(tmp_path: Path) -> None:
    result = run_sample("-q", "--impromptu-share", "--impromptu-size", f"{WIDTH}x{HEIGHT}", "-k", "green", SAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"impromptu: virtual display :\d+ \(640x480\)", lines[0]), lines
    assert re.fullmatch(r"impromptu: watch and control the tests: http://127\.0\.0\.1:\d+/#c=[\w-]+", lines[1])
    assert re.fullmatch(r"impromptu: watch only: http://127\.0\.0\.1:\d+/#v=[\w-]+", lines[2])
    assert lines[3].startswith(".")  # then the tests


BREAK_PLUGIN = """
from impromptu.api import VirtualDisplay
from impromptu.stream.record import Recording

screenshot = VirtualDisplay.screenshot
write = Recording._write


def broken_screenshot(self, path=None):
    if path is not None:  # the plugin's last frame; the sample tests take theirs without a path
        raise OSError("no screenshot today (forced by the test)")
    return screenshot(self, path)


def broken_write(self, chunk):
    if "red_window" in self.path.name and self.started.is_set():
        raise OSError("the disk is full (forced by the test)")
    write(self, chunk)


VirtualDisplay.screenshot = broken_screenshot
Recording._write = broken_write
"""


@needs_xvfb
def test_failures_of_its_own_never_stop_the_run(tmp_path: Path) -> None:
    # Warnings are errors here (as in this project's own configuration): a warning from the plugin's report hook
    # would be an INTERNALERROR that ends the run. The failed test's screenshot and recording both fail.
    (tmp_path / "break_impromptu.py").write_text(BREAK_PLUGIN)
    folder = tmp_path / "recordings"
    junit = tmp_path / "junit.xml"
    result = run_sample("-W", "error", "-p", "break_impromptu", *_recording_failed(folder, junit), pythonpath=tmp_path)
    out = result.stdout
    assert "INTERNALERROR" not in out + result.stderr, out + result.stderr
    assert re.search(r"^=+ 1 failed, 3 passed, 1 error in ", out, re.MULTILINE), out + result.stderr
    # Said in the failed test's report and in the summary; no broken file pointed at, none left behind.
    summary = out.split("impromptu recordings")[1]
    for where in (out.split("short test summary")[0], summary):
        assert "impromptu: no last-frame screenshot: no screenshot today (forced by the test)" in where
        assert re.search(r"impromptu: recording failed: recording \S+ failed: the disk is full", where), where
    assert f"{TEARDOWN}: {folder / file_stem(TEARDOWN)}.mp4" in summary
    assert sorted(p.name for p in folder.iterdir()) == [f"{file_stem(TEARDOWN)}.mp4"]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    case = next(c for c in suite.iter("testcase") if c.get("name") == "test_red_window_fails_on_purpose")
    assert case.find("properties") is None
