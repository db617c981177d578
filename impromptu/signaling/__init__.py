"""Signaling: the page server with its websocket rooms, the lobby of a standalone one, and a desktop's seat on a
server of either kind."""

from impromptu.signaling.client import RemoteSignaling, SignalUrl
from impromptu.signaling.seat import DesktopSeat, DesktopSignaling
from impromptu.signaling.server import DesktopAttachment, SignalingServer

__all__ = ["DesktopAttachment", "DesktopSeat", "DesktopSignaling", "RemoteSignaling", "SignalUrl", "SignalingServer"]
