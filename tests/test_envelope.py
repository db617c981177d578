"""Relayed envelopes (docs/protocol.md §7): sealed under a key only Kc holders have, bound to their sender and
number, unreadable and unforgeable for a relay — and the page (tests/js) seals the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

from impromptu import envelope
from impromptu.link import LinkKeys, from_b64url

VECTORS = Path(__file__).parent / "vectors.json"


def test_the_shared_vector_opens_and_is_what_the_page_seals() -> None:
    v = json.loads(VECTORS.read_text())["input"]
    kc = from_b64url(json.loads(VECTORS.read_text())["kc"])
    sealed = envelope.parse({"type": "relayed", "from": v["from"], "seq": v["seq"], "iv": v["iv"], "box": v["box"]})
    assert sealed is not None
    assert envelope.open_sealed(kc, sealed) == v["msg"]
    assert envelope.seal(kc, v["from"], v["seq"], v["msg"], iv=from_b64url(v["iv"])) == sealed
    # Nothing of the message shows in the envelope.
    assert "KeyA" not in json.dumps(sealed.message())


def test_only_kc_opens_it_and_only_for_its_sender_and_number() -> None:
    keys = LinkKeys.generate()
    sealed = envelope.seal(keys.control, "a", 3, '{"type":"input.release"}')
    assert envelope.open_sealed(keys.control, sealed) == '{"type":"input.release"}'
    assert envelope.open_sealed(keys.view, sealed) is None
    assert envelope.open_sealed(keys.control, envelope.Envelope("b", 3, sealed.iv, sealed.box)) is None
    assert envelope.open_sealed(keys.control, envelope.Envelope("a", 4, sealed.iv, sealed.box)) is None
    flipped = sealed.box[:-2] + ("A" if sealed.box[-2] != "A" else "B") + sealed.box[-1]
    assert envelope.open_sealed(keys.control, envelope.Envelope("a", 3, sealed.iv, flipped)) is None
    # A key only a Kv holder could make (the view key standing in for Kc) seals nothing the desktop opens.
    assert envelope.open_sealed(keys.control, envelope.seal(keys.view, "a", 3, "{}")) is None


def test_parse_keeps_the_known_fields_and_refuses_bad_ones() -> None:
    good = envelope.seal(LinkKeys.generate().control, "a", 1, "{}").message()
    assert envelope.parse({**good, "extra": "x" * 10_000}) == envelope.parse(good)
    assert envelope.parse({**good, "extra": 1}).message() == good  # type: ignore[union-attr]
    for bad in (
        {"from": ""},
        {"from": "x" * 257},
        {"seq": 0},
        {"seq": True},
        {"seq": 2**53},
        {"seq": "1"},
        {"iv": "short"},
        {"iv": "é" * 16},
        {"box": ""},
        {"box": "a" * (envelope.MAX_BOX + 1)},
        {"box": "not base64!"},
    ):
        assert envelope.parse({**good, **bad}) is None, bad
