"""Round trips for generated packets and frames; arbitrary bytes raise only our codec errors."""

from __future__ import annotations

import contextlib
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from connector.domain.btp import frames
from connector.domain.errors import BtpCodecError, IlpCodecError
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Packet, Prepare
from tests.strategies import btp_frames, ilp_packets, prepares, request_ids, timestamps


@given(ilp_packets)
def test_ilp_decode_encode_round_trip(packet: Packet) -> None:
    assert codec.decode(codec.encode(packet)) == packet


@given(btp_frames)
def test_btp_decode_encode_round_trip(frame: frames.Frame) -> None:
    assert frames.decode(frames.encode(frame)) == frame


@given(st.binary(max_size=200))
def test_ilp_decoder_raises_only_its_codec_error(raw: bytes) -> None:
    with contextlib.suppress(IlpCodecError):
        codec.decode(raw)


@given(st.sampled_from([b"\x0c", b"\x0d", b"\x0e"]), st.binary(max_size=200))
def test_ilp_decoder_on_plausible_headers_raises_only_its_codec_error(
    head: bytes, rest: bytes
) -> None:
    raw = head + bytes((len(rest),)) + rest if len(rest) < 128 else head + rest
    with contextlib.suppress(IlpCodecError):
        codec.decode(raw)


@given(st.binary(max_size=200))
def test_btp_decoder_raises_only_its_codec_error(raw: bytes) -> None:
    with contextlib.suppress(BtpCodecError):
        frames.decode(raw)


@given(st.sampled_from([1, 2, 6, 7]), st.integers(0, 2**32 - 1), st.binary(max_size=120))
def test_btp_decoder_on_intact_headers_raises_only_its_codec_error(
    kind: int, request_id: int, body: bytes
) -> None:
    raw = bytes((kind,)) + request_id.to_bytes(4, "big") + bytes((len(body),)) + body
    try:
        frame = frames.decode(raw)
    except BtpCodecError as exc:
        # Responses are never answerable, requests always are once the header is intact.
        assert exc.answerable is (kind in (6, 7))
    else:
        assert frame.request_id == request_id


@given(ilp_packets, st.integers(0, 2**32 - 1))
def test_ilp_packet_inside_a_message_round_trips(packet: Packet, request_id: int) -> None:
    raw = codec.encode(packet)
    message = frames.decode(frames.encode(frames.ilp_message(request_id, raw)))
    inner = frames.ilp_entry(message)
    assert inner is not None
    assert codec.decode(inner) == packet
    assert frames.encode_ilp_frame(frames.FrameType.MESSAGE, request_id, raw) == frames.encode(
        frames.ilp_message(request_id, raw)
    )


@given(ilp_packets, request_ids, st.sampled_from([frames.FrameType.MESSAGE, 1]))
def test_the_fast_ilp_frame_path_agrees_with_the_general_decoder(
    packet: Packet, request_id: int, kind: int
) -> None:
    raw = frames.encode_ilp_frame(frames.FrameType(kind), request_id, codec.encode(packet))
    fast = frames.decode_ilp_fast(raw)
    assert fast is not None
    general = frames.decode(raw)
    assert fast == (kind, general.request_id, frames.ilp_entry(general))
    assert raw == frames.encode(frames.decode(raw))  # the fast encoder is canonical too


@given(st.binary(max_size=400), st.binary(max_size=40))
def test_the_fast_ilp_frame_path_never_disagrees_on_any_bytes(tail: bytes, head: bytes) -> None:
    for raw in (head + tail, b"\x06\x00\x00\x00\x01" + head + tail):
        fast = frames.decode_ilp_fast(raw)
        if fast is None:
            continue  # the general decoder decides
        frame = frames.decode(raw)
        assert fast == (raw[0], frame.request_id, frames.ilp_entry(frame))
        assert len(frame.protocol_data) >= 1


@given(ilp_packets)
def test_the_fast_reply_decoder_agrees_with_the_general_one(packet: Packet) -> None:
    if isinstance(packet, Prepare):
        return
    raw = codec.encode(packet)
    assert codec.decode_reply(raw) == codec.decode(raw)
    assert codec.decode_reply(raw + b"trailing") == codec.decode(raw + b"trailing")


@given(prepares, timestamps, st.integers(0, 2**64 - 1))
def test_a_patched_prepare_is_the_prepare_with_the_new_amount_and_expiry(
    prepare: Prepare, expiry: datetime, amount: int
) -> None:
    raw = codec.encode(prepare)
    patched = codec.patch_prepare(raw + b"junk after the envelope", amount, expiry)
    assert patched == codec.encode(
        Prepare(amount, expiry, prepare.execution_condition, prepare.destination, prepare.data)
    )


@given(ilp_packets, st.binary(max_size=20))
def test_a_relayed_reply_is_its_canonical_encoding(packet: Packet, tail: bytes) -> None:
    if isinstance(packet, Prepare):
        return
    raw = codec.encode(packet)
    for wire in (raw, raw + tail):
        reply, canonical = codec.decode_reply_bytes(wire)
        assert reply == packet
        assert canonical == raw
        if wire == raw:
            assert canonical is wire or canonical == wire
