"""Every BTP vector in shared/protocol/vectors/btp.json, and our choices where btp-packet is lax."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connector.domain.btp import frames
from connector.domain.btp.frames import Error, Message, Response, Transfer
from connector.domain.errors import BtpCodecError
from tests.vectors import cases


def _iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_matches_decoded(frame: frames.Frame, expected: dict[str, Any]) -> None:
    assert frame.request_id == expected["requestId"]
    body = expected["data"]
    kind = {1: Response, 2: Error, 6: Message, 7: Transfer}[expected["type"]]
    assert isinstance(frame, kind)
    if isinstance(frame, Transfer):
        assert frame.amount == int(body["amount"])
    if isinstance(frame, Error):
        assert frame.code == body["code"]
        assert frame.name == body["name"]
        assert frame.triggered_at == _iso(body["triggeredAt"])
        assert frame.data == body["data"].encode()
    entries = [(e.name, e.content_type, e.data.hex()) for e in frame.protocol_data]
    assert entries == [
        (e["protocolName"], e["contentType"], e["data"]) for e in body["protocolData"]
    ]


@pytest.mark.parametrize("vector", cases("btp.json", "valid"))
def test_valid_vector_decodes_to_recorded_fields_and_reencodes_byte_for_byte(
    vector: dict[str, Any],
) -> None:
    raw = bytes.fromhex(vector["hex"])
    frame = frames.decode(raw)
    assert_matches_decoded(frame, vector["decoded"])
    assert frames.encode(frame) == raw


ACCEPTED_INVALID = {
    # RFC-0030 extensibility: trailing bytes, after or inside the envelope, are ignored.
    "trailing_bytes_after_envelope",
    "trailing_bytes_inside_envelope",
}


@pytest.mark.parametrize("vector", cases("btp.json", "invalid"))
def test_invalid_vector_follows_our_documented_choice(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    if vector["name"] in ACCEPTED_INVALID:
        assert_matches_decoded(frames.decode(raw), vector["btp_packet"]["decoded"])
        return
    with pytest.raises(BtpCodecError):
        frames.decode(raw)


REJECTED_EDGE_CASES = {"protocol_name_non_ascii_byte"}  # never fold 0xe9 to "i"


@pytest.mark.parametrize("vector", cases("btp.json", "edge_cases"))
def test_edge_case_follows_our_documented_choice(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    if vector["name"] in REJECTED_EDGE_CASES:
        with pytest.raises(BtpCodecError):
            frames.decode(raw)
        return
    frame = frames.decode(raw)
    assert frame.request_id == vector["btp_packet"]["decoded"]["requestId"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("error_triggered_at_rfc0030_no_millis", datetime(2017, 12, 24, 16, 14, 32, tzinfo=UTC)),
        ("error_triggered_at_two_digit_fraction", "parsed"),
        ("error_triggered_at_iso8601", datetime(2017, 12, 24, 16, 14, 32, 279000, tzinfo=UTC)),
        ("error_triggered_at_garbage", None),
        ("error_triggered_at_empty", None),
    ],
)
def test_triggered_at_is_read_leniently(name: str, expected: object) -> None:
    vector = next(
        c.values[0] for c in cases("btp.json", "edge_cases") if c.values[0]["name"] == name
    )
    frame = frames.decode(bytes.fromhex(vector["hex"]))
    assert isinstance(frame, Error)
    if expected == "parsed":
        assert frame.triggered_at is not None
    else:
        assert frame.triggered_at == expected


@pytest.mark.parametrize(
    ("name", "answerable"),
    [
        ("legacy_type_3_prepare", True),  # a request type we do not serve: answer F00
        ("unknown_type_8", True),
        ("entry_data_overflow", True),  # header intact, MESSAGE body broken: answer F01
        ("envelope_length_overflow", False),  # the envelope itself is broken: silence
        ("error_code_truncated", False),  # never answer a response, however broken
        ("non_canonical_length_81_02", False),
        ("empty_buffer", False),
    ],
)
def test_codec_error_says_whether_the_frame_can_be_answered(name: str, answerable: bool) -> None:
    vector = next(c.values[0] for c in cases("btp.json", "invalid") if c.values[0]["name"] == name)
    with pytest.raises(BtpCodecError) as info:
        frames.decode(bytes.fromhex(vector["hex"]))
    assert info.value.answerable is answerable
    if answerable:
        assert info.value.request_id == 1


def test_auth_entries_with_wrong_content_types_still_read() -> None:
    vector = next(
        c.values[0]
        for c in cases("btp.json", "edge_cases")
        if c.values[0]["name"] == "auth_entries_wrong_content_types"
    )
    auth = frames.read_auth(frames.decode(bytes.fromhex(vector["hex"])))
    assert auth.request_id == 21


def test_auth_entry_not_first_is_refused() -> None:
    vector = next(
        c.values[0]
        for c in cases("btp.json", "edge_cases")
        if c.values[0]["name"] == "auth_entry_not_first"
    )
    with pytest.raises(BtpCodecError, match="first protocol data entry must be auth"):
        frames.read_auth(frames.decode(bytes.fromhex(vector["hex"])))


def test_serializer_quirks_raise_instead_of_wrapping() -> None:
    with pytest.raises(BtpCodecError):
        Transfer(1, 2**64)
    with pytest.raises(BtpCodecError):
        Message(2**32)
    with pytest.raises(BtpCodecError):
        Error(1, "F0", "NotAcceptedError", None)
    with pytest.raises(BtpCodecError):
        frames.ProtocolDataEntry("\u00e9", 0, b"")
