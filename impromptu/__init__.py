"""impromptu: instant shared desktops over peer-to-peer WebRTC, encoded once, with no media server."""

import logging

__version__ = "0.1.0"
__all__ = ["__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
