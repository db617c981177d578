"""Viewers' pointer and keyboard input: validation (``InputDispatcher``) and injection (``InputSink``).

Backends are interchangeable behind ``InputSink``; ``open_input_sink`` picks the one for this platform.
"""

from __future__ import annotations

import sys

from ..errors import InputError
from .base import InputSink
from .dispatch import InputDispatcher

__all__ = ["InputDispatcher", "InputSink", "open_input_sink"]


def open_input_sink(display: str) -> InputSink:
    """Open the input backend for ``display`` (an X display name such as ``":5"`` on Linux).

    Raises ``InputError`` if input cannot be injected there (display unreachable, XTEST missing, or no backend
    for this platform).
    """
    if sys.platform == "win32":
        # The place for a Windows backend (SendInput), behind the same InputSink interface.
        raise InputError("input injection is not implemented on Windows yet; share an X display from Linux")
    # Imported here so that importing impromptu.input needs no X libraries on platforms without X.
    from .xtest import XTestSink

    return XTestSink(display)
