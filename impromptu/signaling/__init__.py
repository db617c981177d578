"""Signaling: the page server with its websocket rooms."""

from impromptu.signaling.server import DesktopAttachment, SignalingServer

__all__ = ["DesktopAttachment", "SignalingServer"]
