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
WIDTH, HEIGHT = 640, 480
SQUARE = 48
"""The side of the white square the failing test's app moves across its red window (gui_sample/colour_app.py)."""

needs_xvfb = pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb")


def run_sample(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "DISPLAY")}
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
    assert len(file_stem("t.py::" + "x" * 400)) == 150


@needs_xvfb
def test_failed_test_leaves_a_recording_of_itself(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    junit = tmp_path / "junit.xml"
    result = run_sample(
        "--impromptu",
        "--impromptu-record=failed",
        "--impromptu-record-dir",
        str(folder),
        "--impromptu-size",
        f"{WIDTH}x{HEIGHT}",
        "--junitxml",
        str(junit),
        SAMPLE,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert re.search(r"^=+ 1 failed, 2 passed in ", out, re.MULTILINE), out
    header = out.split("collected")[0]
    assert re.search(rf"^impromptu: virtual display :\d+ \({WIDTH}x{HEIGHT}\)$", header, re.MULTILINE), out

    # Only the failed test's recording and picture are kept.
    stem = file_stem(FAILING)
    video, picture = folder / f"{stem}.mp4", folder / f"{stem}.png"
    assert sorted(p.name for p in folder.iterdir()) == sorted([video.name, picture.name])

    # The JUnit XML: one failure, with the files as properties; the test's duration.
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("errors"), suite.get("tests")) == ("1", "0", "3")
    case = next(c for c in suite.iter("testcase") if c.get("name") == "test_red_window_fails_on_purpose")
    assert case.find("failure") is not None
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties == {"impromptu_recording": str(video), "impromptu_screenshot": str(picture)}
    for passed in suite.iter("testcase"):
        if passed is not case:
            assert passed.find("properties") is None
    test_s = float(case.get("time", "0"))

    # The report: a section in the failure, and the summary at the end.
    assert f"recording: {video}" in out and f"last frame: {picture}" in out
    summary = out.split("impromptu recordings")[1]
    assert f"{FAILING}: {video} (last frame: {picture})" in summary

    # The recording decodes, lasts as long as the test, and shows the app: its red window with the white square
    # moving across it.
    with av.open(str(video)) as container:
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert len(frames) >= 10
    assert frames[0][1].shape == (HEIGHT, WIDTH, 3)
    duration = frames[-1][0] - frames[0][0]
    # The test sleeps 1.5 s showing the window; setup, the window's start and the teardown add a little. The
    # recording starts at the first keyframe after the test's setup began, and ends with its teardown.
    assert duration >= 1.4
    assert abs(duration - test_s) <= max(0.5, 0.2 * test_s), (duration, test_s)
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
