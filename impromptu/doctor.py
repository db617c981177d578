"""``impromptu doctor``: what this machine has, what it lacks, and how to get it.

Each probe becomes one :class:`Check`. A check that is not ``required`` only costs a feature or some speed
(impromptu degrades and says so); a failed required check means impromptu cannot work as asked. The CLI prints
:func:`format_report` and exits non-zero when a required check failed.
"""

from __future__ import annotations

import gc
import os
import shutil
import warnings
from dataclasses import dataclass

import mss
import Xlib.display
import Xlib.error

from impromptu.display import Xvfb
from impromptu.errors import DisplayError

__all__ = ["Check", "format_report", "required_ok", "run_checks"]


@dataclass(frozen=True)
class Check:
    """The outcome of one probe."""

    name: str
    ok: bool
    #: What was found: a path, a version, or what is wrong.
    detail: str
    #: What to do about it; shown only when the check failed.
    fix: str | None = None
    #: Whether impromptu cannot work without it (else a failure only loses a feature or some speed).
    required: bool = True


# (extension name, required, what it is for, fix)
_EXTENSIONS: tuple[tuple[str, bool, str, str], ...] = (
    (
        "XTEST",
        True,
        "injects viewers' pointer and keyboard input",
        "use an X server with XTEST (Xvfb has it unless started with -extension XTEST)",
    ),
    (
        "MIT-SHM",
        False,
        "fast shared-memory capture; without it capture falls back to the slower XGetImage",
        "use a local X server with MIT-SHM (it is never available over ssh -X or a TCP display)",
    ),
    (
        "Composite",
        False,
        "captures one window even when covered",
        "enable the Composite extension in the X server (Xvfb has it by default)",
    ),
    (
        "DAMAGE",
        False,
        "tells capture what changed; without it every frame is grabbed and compared",
        "enable the DAMAGE extension in the X server (Xvfb has it by default)",
    ),
)

# (PyAV encoder name, check name)
_ENCODERS: tuple[tuple[str, str], ...] = (("libx264", "H.264 (libx264)"), ("libvpx", "VP8 (libvpx)"))


def run_checks(display: str | None) -> list[Check]:
    """Probe programs, encoders and the X server; never raises for a foreseeable problem.

    With *display* (``":1"``, ``"host:0.0"``) the X checks run against that display; without, against a
    temporary Xvfb that is stopped before returning.
    """
    checks = _program_checks(need_xvfb=display is None)
    checks += _encoder_checks()
    checks += _display_checks(display)
    return checks


def required_ok(checks: list[Check]) -> bool:
    """Whether every required check passed."""
    return all(c.ok for c in checks if c.required)


def format_report(checks: list[Check]) -> str:
    """One line per check: ✓ or ✗, name, detail, and for a failure ``fix: …``; then a summary line."""
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        line = f"{'✓' if c.ok else '✗'} {c.name:<{width}}  {c.detail}"
        if not c.ok:
            if not c.required:
                line += " (optional)"
            if c.fix:
                line += f" — fix: {c.fix}"
        lines.append(line)
    failed = [c.name for c in checks if c.required and not c.ok]
    if failed:
        lines.append(f"{len(failed)} required check(s) failed: {', '.join(failed)}")
    else:
        lines.append("all required checks passed")
    return "\n".join(lines)


def _apt(package: str) -> str:
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get install {package}"


def _program_checks(*, need_xvfb: bool) -> list[Check]:
    checks = []
    xvfb = shutil.which("Xvfb")
    checks.append(
        Check("Xvfb", True, xvfb)
        if xvfb
        else Check(
            "Xvfb",
            False,
            "not found on PATH; `impromptu vdisplay run` needs it",
            fix=_apt("xvfb"),
            required=need_xvfb,
        )
    )
    xterm = shutil.which("xterm")
    checks.append(
        Check("xterm", True, xterm, required=False)
        if xterm
        else Check("xterm", False, "not found on PATH; `make demo` shares it", fix=_apt("xterm"), required=False)
    )
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    checks.append(
        Check("Chromium", True, chromium, required=False)
        if chromium
        else Check(
            "Chromium",
            False,
            "not found on PATH; the end-to-end tests drive it",
            fix=_apt("chromium"),
            required=False,
        )
    )
    return checks


def _encoder_checks() -> list[Check]:
    found: list[tuple[str, bool, str]] = []  # (check name, available, detail)
    try:
        # Imported here so that a broken PyAV becomes a failed check rather than an ImportError.
        import av.codec
    except ImportError as exc:
        found = [(name, False, f"PyAV cannot be imported: {exc}") for _, name in _ENCODERS]
        fix = "reinstall impromptu's dependencies (`pip install av`)"
    else:
        for codec_name, name in _ENCODERS:
            try:
                codec = av.codec.Codec(codec_name, "w")
            except ValueError:  # av.codec.codec.UnknownCodecError
                found.append((name, False, f"PyAV's FFmpeg has no {codec_name} encoder"))
            else:
                found.append((name, True, codec.long_name))
        fix = "PyAV's own wheels bundle libx264 and libvpx: `pip install --force-reinstall av`"
    # One encoder is enough: the other is then optional.
    any_ok = any(ok for _, ok, _ in found)
    return [Check(name, ok, detail, fix=None if ok else fix, required=not any_ok) for name, ok, detail in found]


def _display_checks(display: str | None) -> list[Check]:
    if display is not None:
        return _probe_display(display, temporary=False)
    if shutil.which("Xvfb") is None:
        return [
            Check(
                "X display",
                False,
                "no --display given and no Xvfb to start a temporary one; X extensions not checked",
                fix=_apt("xvfb"),
            )
        ]
    xvfb = Xvfb((320, 240))
    try:
        xvfb.start()
    except DisplayError as exc:
        return [
            Check(
                "X display",
                False,
                f"a temporary Xvfb did not start: {exc}; X extensions not checked",
                fix="run `Xvfb :99` by hand to see why it fails",
            )
        ]
    try:
        return _probe_display(xvfb.name, temporary=True)
    finally:
        xvfb.stop()


def _probe_display(name: str, *, temporary: bool) -> list[Check]:
    conn, error = _connect(name)
    if conn is None:
        return [
            Check(
                "X display",
                False,
                f"{error}; X extensions not checked",
                fix=f"check that an X server runs on {name} and that you may use it (DISPLAY, XAUTHORITY)",
            )
        ]
    try:
        screen = conn.screen()
        which = f"temporary Xvfb {name}" if temporary else name
        checks = [
            Check(
                "X display",
                True,
                f"{which}: {screen.width_in_pixels}x{screen.height_in_pixels}, {conn.display.info.vendor}",
            )
        ]
        for ext, required, purpose, fix in _EXTENSIONS:
            if conn.query_extension(ext) is not None:
                checks.append(Check(ext, True, purpose, required=required))
            else:
                detail = f"not offered by {name}; {purpose}"
                checks.append(Check(ext, False, detail, fix=fix, required=required))
    finally:
        conn.close()
    checks.append(_mss_check(name))
    return checks


def _connect(name: str) -> tuple[Xlib.display.Display | None, str]:
    """An Xlib connection to *name*, or None and why not."""
    with warnings.catch_warnings():
        # python-xlib leaves its sockets open when connecting fails; their ResourceWarning is noise here.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return Xlib.display.Display(name), ""
        except (Xlib.error.DisplayError, Xlib.error.ConnectionClosedError, OSError) as exc:
            error = str(exc)
        gc.collect()  # finalise the leaked sockets while their warning is still ignored
    return None, error


def _mss_check(name: str) -> Check:
    """Grab one pixel with mss, which tries XShmGetImage and records why it fell back if it did."""
    check_name = "capture (mss)"
    try:
        with mss.MSS(display=name) as sct:
            sct.grab({"left": 0, "top": 0, "width": 1, "height": 1})
            status = list(sct.performance_status)
    except mss.ScreenShotError as exc:
        return Check(
            check_name,
            False,
            f"mss cannot grab the screen of {name}: {exc}",
            fix="check the display's permissions; `impromptu doctor` on the same machine as the X server",
        )
    if any("MIT-SHM is working" in s for s in status):
        return Check(check_name, True, "XShmGetImage works", required=False)
    reason = "; ".join(status) or "no reason recorded"
    return Check(
        check_name,
        False,
        f"XShmGetImage unusable, falling back to XGetImage: {reason}",
        fix="run impromptu on the machine that runs the X server, with MIT-SHM enabled",
        required=False,
    )
