"""impromptu.doctor against a real Xvfb, and its report."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from impromptu.doctor import Check, format_report, required_ok, run_checks

pytestmark = pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb (apt-get install xvfb)")


def _by_name(checks: list[Check]) -> dict[str, Check]:
    names = [c.name for c in checks]
    assert len(names) == len(set(names)), names
    return {c.name: c for c in checks}


def _unused_display() -> str:
    for number in range(9999, 9000, -1):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return f":{number}"
    raise AssertionError("no free display number")


def test_checks_on_a_real_display(xvfb_display: str) -> None:
    environ_before = dict(os.environ)
    checks = _by_name(run_checks(xvfb_display))
    assert os.environ == environ_before

    assert checks["X display"].ok, checks["X display"]
    assert xvfb_display in checks["X display"].detail
    assert checks["XTEST"].ok and checks["XTEST"].required
    assert checks["MIT-SHM"].ok
    assert checks["Composite"].ok
    assert checks["DAMAGE"].ok
    assert checks["capture (mss)"].ok, checks["capture (mss)"]
    encoders = [checks["H.264 (libx264)"], checks["VP8 (libvpx)"]]
    assert any(c.ok for c in encoders)
    assert checks["Xvfb"].ok
    assert required_ok(list(checks.values()))


def _xvfb_children() -> set[int]:
    """PIDs of this process's Xvfb children."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:  # the process ended while we looked
            continue
        if fields.get("Name", "").strip() == "Xvfb" and fields.get("PPid", "").strip() == str(os.getpid()):
            found.add(int(status.parent.name))
    return found


def test_temporary_xvfb_is_started_and_stopped() -> None:
    before = _xvfb_children()
    checks = _by_name(run_checks(None))
    display = checks["X display"]
    assert display.ok, display
    assert re.search(r"temporary Xvfb :\d+", display.detail), display.detail
    assert checks["XTEST"].ok and checks["MIT-SHM"].ok
    assert _xvfb_children() == before  # stopped and reaped


def test_unreachable_display_fails_clearly() -> None:
    name = _unused_display()
    checks = run_checks(name)  # must not raise
    by_name = _by_name(checks)
    display = by_name["X display"]
    assert not display.ok and display.required
    assert name in display.detail
    assert "XTEST" not in by_name  # nothing to probe without a connection
    assert not required_ok(checks)

    report = format_report(checks)
    line = next(line for line in report.splitlines() if "X display" in line)
    assert line.startswith("✗") and "fix:" in line and name in line
    assert "required check(s) failed: X display" in report


def test_bad_display_name_fails_clearly() -> None:
    checks = _by_name(run_checks("not a display"))
    assert not checks["X display"].ok
    assert "not a display" in checks["X display"].detail


def test_format_report() -> None:
    checks = [
        Check("Xvfb", True, "/usr/bin/Xvfb", fix="never shown"),
        Check("xterm", False, "not found", fix="apt-get install xterm", required=False),
        Check("XTEST", False, "not offered", fix="enable XTEST"),
    ]
    lines = format_report(checks).splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("✓ Xvfb") and "/usr/bin/Xvfb" in lines[0] and "fix:" not in lines[0]
    assert lines[1].startswith("✗ xterm") and "(optional)" in lines[1]
    assert "fix: apt-get install xterm" in lines[1]
    assert lines[2].startswith("✗ XTEST") and "not offered" in lines[2] and "fix: enable XTEST" in lines[2]
    assert "1 required check(s) failed: XTEST" in lines[3]
    assert "all required checks passed" in format_report(checks[:2])
