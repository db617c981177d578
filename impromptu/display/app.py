"""Launching and reaping the shared application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from impromptu.errors import AppError

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 2.0


def exit_status(returncode: int) -> int:
    """A shell-style exit status: a child killed by signal N gives 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class App:
    """One application process (and its process group) running on a display."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        if not command:
            raise AppError("no command to run: give one after `--`, e.g. `impromptu vdisplay run -- xterm`")
        self.command = command
        self._env = env
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        try:
            # Its own session: the terminal's Ctrl-C reaches us, and we stop the app in order.
            self._proc = await asyncio.create_subprocess_exec(
                *self.command, env=self._env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
            )
        except FileNotFoundError as exc:
            raise AppError(f"command not found: {self.command[0]}") from exc
        except PermissionError as exc:
            raise AppError(f"command is not executable: {self.command[0]}") from exc
        except OSError as exc:
            raise AppError(f"cannot run {self.command[0]}: {exc.strerror or exc}") from exc
        logger.info("started %s (pid %d)", self.command[0], self._proc.pid)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def wait(self) -> int:
        """Wait for the app to exit; returns its shell-style exit status."""
        assert self._proc is not None, "App.wait() before start()"
        return exit_status(await self._proc.wait())

    async def stop(self) -> None:
        """Terminate the app's whole process group, then kill what is left (idempotent)."""
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid
        if proc.returncode is None:
            self._signal_group(pgid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                logger.warning("%s ignored SIGTERM; killing it", self.command[0])
        # Whatever the app left in its group (a shell's children, say) goes too.
        self._signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
