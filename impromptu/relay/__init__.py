"""Relays (docs/protocol.md §7): a viewer that serves the stream it receives, unchanged, to viewers of its own."""

from impromptu.relay.forward import Forwarder, KeyframeRequests
from impromptu.relay.session import RelayOptions, RelaySession, run_relay
from impromptu.relay.upstream import Upstream

__all__ = ["Forwarder", "KeyframeRequests", "RelayOptions", "RelaySession", "Upstream", "run_relay"]
