"""WebRTC peers (aiortc): the desktop's connections to viewers, the offers that make them, and its ICE policy."""

import impromptu.rtc.limits  # (a bound on what a peer makes aiortc reassemble: installs itself)
import impromptu.rtc.priority  # (control messages ahead of video: installs itself)
import impromptu.rtc.udp  # noqa: F401  (bigger UDP receive buffers: installs itself)
from impromptu.rtc.ice import IcePolicy
from impromptu.rtc.offers import ViewerOffers
from impromptu.rtc.peer import ViewerPeer

__all__ = ["IcePolicy", "ViewerOffers", "ViewerPeer"]
