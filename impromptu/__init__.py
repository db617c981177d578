"""impromptu: instant shared desktops over peer-to-peer WebRTC, encoded once, with no media server.

The Python API (``VirtualDisplay``, ``Share``, ``ScreenRecording``: see ``impromptu.api``) is imported on first
use, so ``import impromptu`` stays cheap (the pytest plugin is loaded by every pytest run).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from impromptu.api import ScreenRecording, Share, VirtualDisplay

__version__ = "0.1.0"
__all__ = ["ScreenRecording", "Share", "VirtualDisplay", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())

_API = frozenset({"ScreenRecording", "Share", "VirtualDisplay"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from impromptu import api

        return getattr(api, name)
    raise AttributeError(f"module 'impromptu' has no attribute {name!r}")
