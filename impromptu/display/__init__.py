"""X displays: virtual ones (Xvfb) and the applications launched on them."""

from impromptu.display.app import App, exit_status
from impromptu.display.xvfb import Xvfb, parse_size

__all__ = ["App", "Xvfb", "exit_status", "parse_size"]
