"""The per-packet fast paths must give exactly the bytes the general encoders give."""

from __future__ import annotations

from datetime import timedelta

from connector.domain.btp import frames
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Prepare, Reject
from tests.fakes import FakeClock, make_prepare


def test_encode_ilp_frame_matches_encode_for_a_packet_of_64_kib_and_more() -> None:
    # A Reject's message may be any length, and a downstream Reject is relayed as its raw bytes
    # (send_result -> encode_ilp_frame): one of 70,000 bytes must still make a readable RESPONSE.
    packet = codec.encode(Reject("F99", "test.bob", "m" * 70_000))
    fast = frames.encode_ilp_frame(frames.FrameType.RESPONSE, 7, packet)
    assert fast == frames.encode(frames.ilp_response(7, packet))
    decoded = frames.decode(fast)
    assert frames.ilp_entry(decoded) == packet


def test_patch_prepare_matches_re_encoding_when_the_envelope_has_unread_bytes() -> None:
    # decode_prepare ignores bytes inside the envelope after `data` (RFC-0030); patch_prepare
    # relays them, so the forwarded bytes differ from what encode_prepare gives for that Prepare.
    clock = FakeClock()
    original = codec.encode_prepare(make_prepare(clock, data=b"hi"))
    body = original[2:] + b"\xff\xff"  # two unread bytes inside the envelope (short form)
    wire = b"\x0c" + bytes((len(body),)) + body
    prepare = codec.decode_prepare(wire)
    expiry = prepare.expires_at - timedelta(seconds=1)
    patched = codec.patch_prepare(wire, 99, expiry)
    expected = codec.encode_prepare(
        Prepare(99, expiry, prepare.execution_condition, prepare.destination, prepare.data)
    )
    assert patched == expected
