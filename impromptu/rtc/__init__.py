"""WebRTC peers (aiortc): the desktop's connections to viewers and its ICE policy."""

from impromptu.rtc.ice import IcePolicy
from impromptu.rtc.peer import ViewerPeer

__all__ = ["IcePolicy", "ViewerPeer"]
