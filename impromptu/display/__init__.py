"""X displays: virtual ones (Xvfb), the applications launched on them, and their windows."""

from impromptu.display.app import App, exit_status
from impromptu.display.windows import (
    WindowInfo,
    WindowSelector,
    WindowWatch,
    find_windows,
    list_windows,
    wait_for_window,
)
from impromptu.display.xvfb import Xvfb, parse_size

__all__ = [
    "App",
    "WindowInfo",
    "WindowSelector",
    "WindowWatch",
    "Xvfb",
    "exit_status",
    "find_windows",
    "list_windows",
    "parse_size",
    "wait_for_window",
]
