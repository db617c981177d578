import json
from pathlib import Path

from impromptu.link import LinkKeys, Role, b64url

VECTORS = Path(__file__).parent / "vectors.json"


def test_room_and_macs_match_the_shared_vectors() -> None:
    """The page (tests/js) checks the same vectors: both ends derive identical rooms and MACs."""
    v = json.loads(VECTORS.read_text())
    keys = LinkKeys(bytes(range(32)))
    assert b64url(keys.control) == v["kc"]
    assert b64url(keys.view) == v["kv"]
    assert keys.room == v["room"]
    assert keys.offer_mac(v["peer"], v["sdp"]) == v["offer_mac"]
    assert keys.answer_role(v["peer"], v["sdp"], v["answer_mac_control"]) is Role.CONTROL


def test_answer_roles() -> None:
    keys = LinkKeys.generate()
    sdp = "v=0\r\n"
    assert keys.answer_role("p", sdp, LinkKeys.answer_mac(keys.control, "p", sdp)) is Role.CONTROL
    assert keys.answer_role("p", sdp, LinkKeys.answer_mac(keys.view, "p", sdp)) is Role.VIEW
    # Bound to the peer and the SDP: a MAC for one cannot be replayed for another.
    assert keys.answer_role("q", sdp, LinkKeys.answer_mac(keys.control, "p", sdp)) is None
    assert keys.answer_role("p", sdp + "x", LinkKeys.answer_mac(keys.control, "p", sdp)) is None
    assert keys.answer_role("p", sdp, LinkKeys.answer_mac(LinkKeys.generate().control, "p", sdp)) is None


def test_room_reveals_nothing_of_the_keys() -> None:
    keys = LinkKeys.generate()
    assert len(keys.room) == 22
    assert b64url(keys.control)[:22] != keys.room and b64url(keys.view)[:22] != keys.room
    assert keys.control_fragment() == f"c={b64url(keys.control)}"
