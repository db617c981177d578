"""Xvfb lifecycle: a virtual X display on a free number, picked by Xvfb itself through ``-displayfd``.

We start Xvfb ourselves rather than through pyvirtualdisplay because its ``stop()`` sends SIGKILL, which leaves
``/tmp/.X11-unix/X<n>`` and ``/tmp/.X<n>-lock`` behind, and because Xvfb must live in its own session so that a
Ctrl-C on the terminal reaches only us: we stop the apps first, then the display.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from impromptu.errors import DisplayError

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x800"`` → ``(1280, 800)``; raises ``ValueError`` with a one-line reason."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 1280x800")
    width, height = int(parts[0]), int(parts[1])
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise ValueError(f"size {text!r} is out of range: each side must be 16 to 8192 pixels")
    return width, height


class Xvfb:
    """A running Xvfb. ``start()``/``stop()`` are idempotent; also a context manager."""

    def __init__(self, size: tuple[int, int] = (1280, 800), depth: int = 24, extra_args: tuple[str, ...] = ()) -> None:
        self.size = size
        self.depth = depth
        self.extra_args = extra_args
        self.number: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the display
        self._stopped = False

    @property
    def name(self) -> str:
        """The display name, e.g. ``":1"``."""
        if self.number is None:
            raise DisplayError("Xvfb is not running")
        return f":{self.number}"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for children: ``base`` (default: ours) with ``DISPLAY`` set to this display."""
        env = dict(os.environ if base is None else base)
        env["DISPLAY"] = self.name
        env.pop("XAUTHORITY", None)
        return env

    def start(self) -> Xvfb:
        if self._stopped:
            raise DisplayError("this Xvfb was stopped; make a new one")
        if self._proc is not None:
            return self
        program = shutil.which("Xvfb")
        if program is None:
            raise DisplayError("Xvfb is not installed: install it with `sudo apt-get install xvfb`")
        width, height = self.size
        read_fd, write_fd = os.pipe()
        command = [
            program,
            "-displayfd", str(write_fd),
            "-screen", "0", f"{width}x{height}x{self.depth}",
            "-nolisten", "tcp",
            "-noreset",
            *self.extra_args,
        ]  # fmt: skip
        try:
            self._proc = subprocess.Popen(
                command,
                pass_fds=[write_fd],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        try:
            self.number = self._read_display_number(read_fd)
        except (DisplayError, subprocess.TimeoutExpired, ValueError) as exc:
            self.stop()
            if isinstance(exc, DisplayError):
                raise
            raise DisplayError(f"Xvfb did not report a display number: {self.stderr_tail()}") from exc
        finally:
            os.close(read_fd)
        return self

    def _read_display_number(self, fd: int) -> int:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        text = b""
        while not text.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DisplayError(f"Xvfb did not start within {START_TIMEOUT_S:.0f} s: {self.stderr_tail()}")
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if ready:
                data = os.read(fd, 64)
                if not data:
                    self._proc.wait(timeout=STOP_TIMEOUT_S)
                    raise DisplayError(f"Xvfb exited with status {self._proc.returncode}: {self.stderr_tail()}")
                text += data
        return int(text.strip())

    def stderr_tail(self, limit: int = 400) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").strip()
        return text[-limit:].replace("\n", " | ") or "(no output)"

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # Xvfb removes its socket and lock file on SIGTERM.
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.number is not None and proc is not None and proc.returncode == -signal.SIGKILL:
            # After a SIGKILL (ours, or someone else's) Xvfb could not clean up: do it for it. Only then: a
            # display that exited by itself cleaned up, and its number may already belong to a newer server.
            for leftover in (Path(f"/tmp/.X11-unix/X{self.number}"), Path(f"/tmp/.X{self.number}-lock")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        self._stderr.close()

    def __enter__(self) -> Xvfb:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
