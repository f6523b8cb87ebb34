"""Round trips for generated packets and frames; arbitrary bytes raise only our codec errors."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from connector.domain.btp import frames
from connector.domain.errors import BtpCodecError, IlpCodecError
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Packet
from tests.strategies import btp_frames, ilp_packets


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
